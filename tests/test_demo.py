"""`make run`'s demo (scripts/demo.py), whole: five nodes made, the exchange shown, and
the nodes served until SIGTERM, which stops every one of them (a second signal
meanwhile too)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import alive, children, stop_group

ROOT = Path(__file__).resolve().parents[1]
PORTS = (8401, 8411, 8421, 8431, 8441)  # the demo's TAXII ports (scripts/demo.py)


def _in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    found, todo = set(), [pid]
    while todo:
        below = children(todo.pop())
        found.update(below)
        todo.extend(below)
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the process tree is read from /proc")
def test_the_demo_shows_the_exchange_and_stops_on_sigterm(tmp_path: Path) -> None:
    busy = [p for p in PORTS if _in_use(p)]
    if busy:
        pytest.skip(f"the demo's ports {busy} are in use here (a `make run` running?)")
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"),
                             str(tmp_path / "demo")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    serving = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "replace"))
            if "Serving the five nodes" in lines[-1]:
                serving.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert serving.wait(600), "".join(lines)[-3000:]
        out = "".join(lines)
        # what crossed, what did not, and the Pacific partner holds nothing bilateral
        assert "exchanged everything their agreements allow in" in out, out[-3000:]
        assert "it holds 0 ==" in out, out[-3000:]
        assert "bilateral material reached" not in out
        nodes = _descendants(proc.pid)
        assert len(nodes) >= 5, f"expected the five nodes' processes, found {nodes}"
        assert all(_in_use(p) for p in PORTS)
        stopping = len(lines)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # while it stops the nodes: a second signal does not cut that short
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            stop_group(proc)
    reader.join(10)
    proc.stdout.close()
    assert "Traceback" not in "".join(lines), "".join(lines)[-3000:]
    # nodes stopped together do not report each other unreachable as they go, and each
    # stops on its own (the demo kills one that takes over 10 s: they are each other's
    # clients, and idle TLS connections used to hold a node for 30 s)
    assert "unreachable" not in "".join(lines[stopping:]), "".join(lines[stopping:])
    assert "killed" not in "".join(lines[stopping:]), "".join(lines[stopping:])
    deadline = time.monotonic() + 30
    while any(alive(p) for p in nodes):
        assert time.monotonic() < deadline, f"node processes outlived the demo: {nodes}"
        time.sleep(0.2)
    assert not any(_in_use(p) for p in PORTS)


def test_the_demo_leaves_a_running_demo_alone(tmp_path: Path) -> None:
    """`make run` while another still serves: the demo removed the running nodes'
    directories under them, then its own nodes could not listen, and it waited a minute
    to say they "did not finish exchanging"."""
    base = tmp_path / "demo"
    base.mkdir()
    (base / ".intelpact-demo").write_text("made by scripts/demo.py\n")
    (base / "jpn").mkdir()  # a running demo's node
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", 8441))  # FJI's TAXII port
            other.listen()
        except OSError:
            pass  # held already: the demo must refuse all the same
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), str(base),
                               "--no-serve"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, check=False)
    assert done.returncode != 0
    assert "8441" in done.stderr and "in use" in done.stderr, done.stderr
    assert (base / "jpn").is_dir() and "Initialised" not in done.stdout
