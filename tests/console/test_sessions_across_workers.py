"""Console sessions across worker processes: two real worker processes of one node
(each runs ``taxii_worker_app``, as ``intelpact serve --workers N`` starts them, here on
a port each so the test knows which one answers) share a log-in, its CSRF token, its
log-out and the end of every session on a password change."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from conftest import csrf_of, login, password
from intelpact.interfaces.server import WORKER_ENV
from intelpact.services.node import Node

from helpers import free_port, make_node, stop_group


def _worker(node_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "intelpact.interfaces.server:taxii_worker_app",
         "--factory", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, WORKER_ENV: str(node_dir)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)


@pytest.fixture()
def workers(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    node = make_node(tmp_path / "jpn")
    node.people.add("sato", party="JPN", clearance="秘", password=password("sato"))
    node.close()
    node_dir = (tmp_path / "jpn").resolve()
    with ExitStack() as stack:
        urls = []
        for _ in range(2):
            port = free_port()
            proc = _worker(node_dir, port)
            stack.callback(stop_group, proc)
            urls.append((f"http://127.0.0.1:{port}", proc))
        deadline = time.monotonic() + 30
        for url, proc in urls:
            while True:
                try:
                    if httpx.get(f"{url}/login").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the worker did not start: " + (
                        proc.stderr.read().decode() if proc.stderr else ""))
                time.sleep(0.1)
        yield node_dir, [u for u, _ in urls]


def test_two_worker_processes_share_a_login(workers: tuple[Path, list[str]]) -> None:
    node_dir, (one, two) = workers
    with httpx.Client(base_url=one) as a, httpx.Client(base_url=two) as b:
        assert login(a, "sato").status_code == 303
        b.cookies.update(a.cookies)
        assert a.get("/").status_code == 200
        assert b.get("/").status_code == 200  # the other process knows the session
        token = csrf_of(a)
        assert csrf_of(b) == token  # and its CSRF token: a form from one posts to the other
        assert b.post("/logout", data={"csrf": token}).status_code == 303
        assert a.get("/").status_code == 303  # logged out everywhere
        # a new password (changed by the operator, a third process) ends every session
        assert login(b, "sato").status_code == 303
        a.cookies.update(b.cookies)
        assert a.get("/").status_code == 200
        node = Node.open(node_dir)
        try:
            node.people.set_password("sato", "a brand-new password")
        finally:
            node.close()
        assert a.get("/").status_code == 303 and b.get("/").status_code == 303
