"""[server] trusted_proxies: behind a reverse proxy the TAXII listener (TAXII API and
console) takes the client's address and scheme from X-Forwarded-For / X-Forwarded-Proto,
but only on a connection from a trusted proxy; the federation listener never does.
Real nodes served by uvicorn on 127.0.0.1 (the proxy's address here)."""

from __future__ import annotations

import dataclasses
import json
import re
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from intelpact.config import write_config
from intelpact.interfaces.console.sessions import COOKIE, LOGIN_COOKIE
from intelpact.interfaces.federation import federation_server_options
from intelpact.interfaces.server import taxii_server_options
from intelpact.services.node import Node
from intelpact.store.base import AuditFilter

from helpers import (
    _in_thread,
    free_port,
    make_node,
    pin_each_other,
    serving,
    start_serve,
    stop_group,
)

TAXII = "application/taxii+json;version=2.1"
PW = "proxy-test-password"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def proxied_node(path: Path, proxies: tuple[str, ...], party: str = "JPN") -> Node:
    """A fresh node whose node.toml trusts ``proxies``, opened again from it."""
    node = make_node(path, party=party)
    write_config(dataclasses.replace(node.config, trusted_proxies=proxies))
    node.close()
    node = Node.open(path)
    assert node.config.trusted_proxies == proxies
    return node


def guess(client: httpx.Client, name: str, password: str, forwarded_for: str | None
          ) -> int:
    headers = {"Accept": TAXII}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return client.get("/taxii2/", auth=(name, password), headers=headers).status_code


def failure_clients(node: Node) -> list[str]:
    return [json.loads(e.body)["client"] for e in node.audit.find(AuditFilter(
        kinds=("login-failure",), limit=1000))]


def test_behind_a_trusted_proxy_logins_are_throttled_and_audited_per_real_client(
        tmp_path: Path) -> None:
    """Behind a proxy every client had the proxy's address: thirty failed logins from one
    attacker through it locked every user out, and every login-failure named the proxy.
    With the proxy trusted, they count and are audited under X-Forwarded-For's client;
    another client through the same proxy still logs in. A chain through a second trusted
    proxy (a network) names the first client; a client's own X-Forwarded-For, which the
    proxy appends to, does not let it choose its address."""
    node = proxied_node(tmp_path / "jpn", ("127.0.0.1", "10.9.0.0/16"))
    node.people.add("pub", party="JPN", clearance="秘", roles=["analyst"], password=PW)
    attacker, other = "203.0.113.7", "198.51.100.9"
    with serving(node) as url, httpx.Client(base_url=url, timeout=20) as client:
        codes = [guess(client, f"guess{i}", "wrong", attacker) for i in range(30)]
        assert codes == [401] * 30
        assert guess(client, "pub", PW, attacker) == 429  # the attacker is locked out
        # ... and stays so, whatever address it puts first: the proxy appends its own
        assert guess(client, "pub", PW, f"192.0.2.1, {attacker}") == 429
        # ... or through a second trusted proxy (10.9.0.0/16) in front of the first
        assert guess(client, "pub", PW, f"{attacker}, 10.9.3.4") == 429
        # another client through the same proxy is not
        assert guess(client, "pub", PW, other) == 200
        assert guess(client, "pub", PW, f"{other}, 10.9.3.4") == 200
        assert guess(client, "guess-other", "wrong", other) == 401
    clients = failure_clients(node)
    node.close()
    assert clients.count(attacker) >= 30 and other in clients
    assert set(clients) == {attacker, other}, set(clients)  # never the proxy's 127.0.0.1


def test_x_forwarded_for_from_an_untrusted_address_is_ignored(tmp_path: Path) -> None:
    """A proxy list that does not hold the connection's address (127.0.0.1) leaves the
    headers ignored exactly as without one: thirty failures lock 127.0.0.1, each audited
    under it, whatever X-Forwarded-For says."""
    node = proxied_node(tmp_path / "jpn", ("10.9.0.1",))
    with serving(node) as url, httpx.Client(base_url=url, timeout=20) as client:
        codes = [guess(client, f"guess{i}", "wrong", f"203.0.113.{i + 1}")
                 for i in range(31)]
    clients = failure_clients(node)
    node.close()
    assert codes == [401] * 30 + [429]
    assert clients and set(clients) == {"127.0.0.1"}


def test_the_default_trusts_no_proxy(tmp_path: Path) -> None:
    """No trusted_proxies (the default): the TAXII listener's options are as before the
    setting, proxy headers off (test_attacks.py checks X-Forwarded-For end to end)."""
    node = make_node(tmp_path / "jpn")
    options = taxii_server_options(node)
    node.close()
    assert options["proxy_headers"] is False and "forwarded_allow_ips" not in options


def _console_login(url: str, headers: dict[str, str]) -> list[str]:
    """Log in to the console as pub; the Set-Cookie headers of the login's answer. The
    cookies are carried by hand: a Secure one httpx would not send back over http."""
    with httpx.Client(base_url=url, timeout=20, follow_redirects=False) as client:
        page = client.get("/login", headers=headers)
        token = CSRF.search(page.text)
        assert token, page.text
        pre = re.search(rf"{LOGIN_COOKIE}=([^;]+)", page.headers["set-cookie"])
        assert pre
        answer = client.post("/login", headers={
            **headers, "Cookie": f"{LOGIN_COOKIE}={pre.group(1)}"}, data={
            "csrf": token.group(1), "name": "pub", "password": PW})
        assert answer.status_code == 303, answer.text
        return answer.headers.get_list("set-cookie")


def _session_cookie(cookies: list[str]) -> str:
    found = [c for c in cookies if c.startswith(f"{COOKIE}=")]
    assert len(found) == 1, cookies
    return found[0].lower()


def test_x_forwarded_proto_https_from_a_trusted_proxy_makes_the_session_cookie_secure(
        tmp_path: Path) -> None:
    """Behind a proxy terminating TLS (tls = false on the node) the console's session
    cookie was not Secure: the console marks it so when the request's scheme is https.
    From a trusted proxy, X-Forwarded-Proto: https is that scheme; from anyone else it
    is ignored."""
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    node = proxied_node(tmp_path / "jpn", ("127.0.0.1",))
    node.people.add("pub", party="JPN", clearance="秘", roles=["analyst"], password=PW)
    with serving(node) as url:
        assert url.startswith("http://")
        assert "; secure" in _session_cookie(_console_login(url, https))
        assert "; secure" not in _session_cookie(_console_login(url, {}))
    node.close()
    untrusted = proxied_node(tmp_path / "nzl", ("10.9.0.1",), party="NZL")
    untrusted.people.add("pub", party="NZL", clearance="SECRET", roles=["analyst"],
                         password=PW)
    with serving(untrusted) as url:
        assert "; secure" not in _session_cookie(_console_login(url, https))
    untrusted.close()


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """What uvicorn made of the connection: the client address and scheme."""
    body = json.dumps({"client": scope["client"][0], "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def test_the_federation_listener_ignores_proxy_headers_even_with_trusted_proxies(
        tmp_path: Path) -> None:
    """Partners reach the federation listener by mutual TLS, never through the proxy:
    its uvicorn options keep proxy headers off whatever trusted_proxies says, so a
    partner on 127.0.0.1 naming another address or scheme is not believed."""
    jpn = proxied_node(tmp_path / "jpn", ("127.0.0.1",))
    nzl = make_node(tmp_path / "nzl", party="NZL")
    pin_each_other(jpn, nzl)
    options = federation_server_options(jpn)
    assert options["proxy_headers"] is False and "forwarded_allow_ips" not in options
    assert taxii_server_options(jpn)["forwarded_allow_ips"] == ["127.0.0.1", "::ffff:7f00:1"]
    ctx = ssl.create_default_context(cafile=str(jpn.config.tls_cert))
    assert nzl.config.tls_cert and nzl.config.tls_key
    ctx.load_cert_chain(str(nzl.config.tls_cert), str(nzl.config.tls_key))
    with _in_thread(_echo, options), httpx.Client(verify=ctx, timeout=20,
                                                  trust_env=False) as client:
        seen = client.get(f"{jpn.config.federation_url}/", headers={
            "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http"}).json()
    jpn.close()
    nzl.close()
    assert seen == {"client": "127.0.0.1", "scheme": "https"}


def test_serve_workers_take_the_client_from_a_trusted_proxy(tmp_path: Path) -> None:
    """`serve --workers N`: each worker process builds its uvicorn config from the
    supervisor's (taxii_server_options), so every worker believes the trusted proxy and
    audits a failed login under X-Forwarded-For's client, never the proxy."""
    node = proxied_node(tmp_path / "jpn", ("127.0.0.1",))
    port = node.config.port
    node.close()
    proc = start_serve(tmp_path / "jpn", "--workers", "2")
    codes = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/taxii2/", timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("serve --workers did not start: " + (
                        proc.stderr.read().decode() if proc.stderr else "")) from None
                time.sleep(0.2)
        for i in range(12):  # new connections: the workers share them
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
                codes.append(guess(client, f"guess{i}", "wrong", "203.0.113.7"))
    finally:
        stop_group(proc)
    node = Node.open(tmp_path / "jpn")
    clients = failure_clients(node)
    node.close()
    assert codes == [401] * 12
    assert len(clients) == 12 and set(clients) == {"203.0.113.7"}, clients


def test_a_trusted_ipv4_proxy_is_known_on_a_dual_stack_worker_socket(tmp_path: Path) -> None:
    """`serve --workers N` on host "::" listens on a socket uvicorn binds itself (its
    Config.bind_socket, dual-stack), where an IPv4 proxy's connection comes from
    ::ffff:10.0.0.5, not 10.0.0.5: a proxy named as IPv4 was not recognised there, and
    every client was the proxy again. Its IPv4-mapped form is trusted too."""
    node = proxied_node(tmp_path / "jpn", ("127.0.0.0/8",))
    options = {**taxii_server_options(node, "::", free_port()), "workers": 2}
    config = uvicorn.Config(_echo, log_level="warning", lifespan="off", **options)
    sock = config.bind_socket()  # as uvicorn's Multiprocess does for its workers
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.01)
        seen = httpx.get(f"http://127.0.0.1:{options['port']}/", timeout=20, headers={
            "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}).json()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        node.close()
    assert seen == {"client": "203.0.113.7", "scheme": "https"}
