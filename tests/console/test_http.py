"""The console over HTTP against a live server: sessions and their cookies, CSRF, the
idle timeout, the access matrix (no page shows what its viewer may not see), the
'not found' page, and TAXII's paths left as they were."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conftest import PEOPLE, World, csrf_of, login, password, serve_console, serving_world
from intelpact.model import Label, national_marking
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import AuditFilter

from helpers import T0, _in_thread, indicator, make_node, serving, stix_id

MISSING = "indicator--00000000-0000-4000-8000-000000000000"
RESULT = re.compile(r'<a class="name" href="/objects/([^"]+)">')


def test_pages_need_a_session(world: World) -> None:
    client = world.client()
    for path in ("/", "/publish", "/desk", "/desk/partner/NZL",
                 f"/objects/{next(iter(world.objects))}"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert "403" not in client.get("/login").text


def test_log_in_sets_a_strict_http_only_session_cookie(world: World) -> None:
    client = world.client()
    r = login(client, "sato")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(c for c in r.headers.get_list("set-cookie")
                  if c.startswith("intelpact_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; the TLS test checks Secure
    assert client.get("/").status_code == 200


def test_wrong_password_is_refused_and_audited(world: World) -> None:
    client = world.client()
    r = login(client, "sato", "not-the-password-at-all")
    assert r.status_code == 401 and "Wrong name or password" in r.text
    assert "intelpact_session" not in r.headers.get("set-cookie", "")
    assert world.node.audit.find(AuditFilter(kinds=("login-failure",)))


def test_log_in_without_its_csrf_token_is_refused(world: World) -> None:
    client = world.client()
    client.get("/login")
    r = client.post("/login", data={"name": "sato", "password": password("sato")})
    assert r.status_code == 403
    assert "intelpact_session" not in r.headers.get("set-cookie", "")


def test_posts_without_the_csrf_token_are_refused(world: World) -> None:
    client = world.client("tanaka")
    before = world.node.store.count(world.node.default_collection().collection_id)
    form = {"kind": "indicator", "name": "csrf-less", "pattern":
            "[ipv4-addr:value = '198.51.100.9']", "level": "秘"}
    for data in (form, {**form, "csrf": "forged"}):
        r = client.post("/publish", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    assert world.node.store.count(world.node.default_collection().collection_id) == before
    assert client.post("/desk", data={"action": "verify"}).status_code == 403
    assert client.post(f"/desk/consent/{MISSING}", data={"action": "refuse",
                                                        "reason": "x"}).status_code == 403
    assert client.post("/desk/alert/1", data={"note": "x"}).status_code == 403
    client.post("/logout", data={})  # no token: the session is not ended
    assert client.get("/").status_code == 200
    client.post("/logout", data={"csrf": csrf_of(client)})
    assert client.get("/").status_code == 303


def test_a_page_refused_for_want_of_the_role_is_audited(world: World) -> None:
    """Publishing on the console without the publisher role was refused (403) and not
    recorded, as over TAXII and on the command line; so were the desk without the
    security-officer role and reading without a reading role. Each is now a `deny`
    event, with the reason and the page (docs/audit.md, "What is recorded")."""
    before = world.node.store.audit_size()
    sato, ops = world.client("sato"), world.client("ops")
    form = {"kind": "indicator", "name": "planted", "level": "秘",
            "pattern": "[ipv4-addr:value = '198.51.100.9']", "csrf": csrf_of(sato)}
    assert sato.post("/publish", data=form).status_code == 403
    assert sato.get("/desk").status_code == 403
    assert ops.get("/").status_code == 403
    denied = [json.loads(e.body) for e in world.node.store.audit_events(
        before, world.node.store.audit_size()) if e.kind == "deny"]
    assert [(e["via"], e["page"], e["reason"]) for e in denied] == [
        ("console", "POST /publish", "this page needs the publisher role"),
        ("console", "GET /desk", "this page needs the security-officer role"),
        ("console", "GET /", "reading intelligence needs the analyst, publisher or "
         "security-officer role")], denied


def test_idle_sessions_end(world: World) -> None:
    client = world.client("sato")
    sessions = world.console.sessions
    old = sessions.idle_seconds
    sessions.idle_seconds = 0.3
    try:
        assert client.get("/").status_code == 200
        time.sleep(0.5)
        r = client.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    finally:
        sessions.idle_seconds = old


def test_a_session_ends_after_its_lifetime_however_busy(world: World) -> None:
    """A session kept busy (a cookie copied, and used every few minutes) lasted for
    ever: only idleness ended it. It ends after its lifetime, and is deleted."""
    client = world.client("sato")
    sessions = world.console.sessions
    assert client.get("/").status_code == 200
    old = sessions.lifetime_seconds
    sessions.lifetime_seconds = 0.3
    try:
        time.sleep(0.5)
        r = client.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    finally:
        sessions.lifetime_seconds = old
    assert client.get("/").status_code == 303  # ended, not only refused while short


def test_revoked_person_is_logged_out(world: World) -> None:
    world.node.people.add("leaver", party="JPN", clearance="秘", password=password("leaver"))
    client = world.client("leaver")
    assert client.get("/").status_code == 200
    world.node.people.revoke("leaver")
    assert client.get("/").status_code == 303


def _results(client: httpx.Client, **params: str) -> list[str]:
    r = client.get("/", params=params)
    assert r.status_code == 200, r.text
    return RESULT.findall(r.text)


@pytest.mark.parametrize("who", sorted(PEOPLE))
def test_access_matrix_no_page_shows_what_the_viewer_may_not_see(world: World,
                                                                  who: str) -> None:
    client = world.client(who)
    expected = world.expected_visible(who)
    hidden = set(world.objects) - expected
    if who == "ops":  # an operator alone reads no intelligence
        assert client.get("/").status_code == 403
        assert client.get(f"/objects/{next(iter(world.objects))}").status_code == 403
        return
    listed = {oid for oid in _results(client) if oid in world.objects}
    assert listed == expected
    pages = [client.get("/").text]
    for oid, body in world.objects.items():
        name = body["name"]
        found = _results(client, q=name)
        assert (oid in found) == (oid in expected), (who, name)
        r = client.get(f"/objects/{oid}")
        raw = client.get(f"/objects/{oid}/raw")
        if oid in expected:
            assert r.status_code == 200 and raw.status_code == 200
            pages += [r.text, raw.text]
        else:  # exactly the page of an object that does not exist
            none = client.get(f"/objects/{MISSING}")
            assert r.status_code == raw.status_code == none.status_code == 404
            assert r.text == none.text == raw.text
    for path in ("/publish", "/desk"):
        r = client.get(path)
        pages.append(r.text)
    for oid in hidden:
        for text in pages:
            assert oid not in text and world.objects[oid]["name"] not in text


def test_a_portion_is_found_by_who_may_read_it(world: World) -> None:
    sato, tanaka = world.client("sato"), world.client("tanaka")
    oid = world.names["hi-rel-nzl"]
    # its description is a 機密 portion: tanaka (機密) finds it by it, sato (秘) does not
    assert _results(tanaka, q="secret-portion") == [oid]
    assert _results(sato, q="secret-portion") == []
    assert _results(sato, q="hi-rel-nzl") == [oid]  # its name is not marked
    page = sato.get(f"/objects/{oid}").text
    assert "secret-portion-words" not in page and "Withheld from you" in page


MORE = re.compile(r'<a class="more" href="([^"]+)"')


def test_a_portion_changes_only_the_pages_of_who_may_read_it(tmp_path: Path) -> None:
    """Fifty objects mention a phrase; so does a 機密 portion (the description) of one more,
    stored first. sato (秘), who may not read it, gets every page (the results, their
    count, the 'Older results' link and the page it leads to) as on a node where that
    description does not hold the phrase: one page of 50 and no link (else the page
    tells what the withheld text holds). pub (機密), who may read it, finds it too: 50
    results, the link, and it on the page after."""
    def pages(folder: str, secret: str) -> dict[str, list[tuple[list[str], bool]]]:
        node = make_node(tmp_path / folder)
        node.people.add("pub", party="JPN", clearance="機密", password=password("pub"),
                        roles=["analyst", "publisher"])
        node.people.add("sato", party="JPN", clearance="秘", roles=["analyst"],
                        password=password("sato"))
        pub = node.people.as_person("pub").person
        cid = node.default_collection().collection_id
        top = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])
        node.publisher.publish(pub, cid, [top])
        mark = MarkingRequest("秘", ("NZL",))
        x = indicator("harbour report", oid=X, description=secret, granular_markings=[
            {"selectors": ["description"], "marking_ref": top["id"]}])
        assert node.publisher.publish(pub, cid, [x], marking=mark).body["failure_count"] == 0
        node.publisher.publish(pub, cid, [indicator(f"operation falcon {i}", oid=_oid(i))
                                          for i in range(50)], marking=mark)
        found: dict[str, list[tuple[list[str], bool]]] = {}
        try:
            with serving(node) as url:
                for who in ("sato", "pub"):
                    with httpx.Client(base_url=url, timeout=30) as client:
                        login(client, who)
                        found[who] = []
                        link = "/?" + urlencode({"q": "operation falcon"})
                        while link:
                            text = client.get(html.unescape(link)).text
                            more = MORE.search(text)
                            found[who].append((RESULT.findall(text), more is not None))
                            link = more.group(1) if more else ""
        finally:
            node.close()
        return found

    falcons = [_oid(i) for i in range(49, -1, -1)]
    hit = pages("hit", "the operation falcon landing is on the 14th")
    miss = pages("miss", "nothing of interest")
    assert hit["sato"] == miss["sato"] == miss["pub"] == [(falcons, False)]
    assert hit["pub"] == [(falcons, True), ([X], False)]


X = "indicator--00000000-0000-4000-8000-0000000000ff"


def _oid(i: int) -> str:
    return f"indicator--00000000-0000-4000-8000-{i:012d}"


def test_filters(world: World) -> None:
    tanaka = world.client("tanaka")
    maritime = [o for o in _results(tanaka, community="MARITIME") if o in world.objects]
    assert maritime == [world.names["maritime-patrol"]]
    rank = world.node.agreement.rank_of("JPN", "機密")
    # by the object's own marking: hi-rel-nzl's 機密 portion does not make it match (else
    # sato, who may not read that portion, would learn it is there)
    assert [o for o in _results(tanaka, level=str(rank)) if o in world.objects] == \
        [world.names["kimitsu-jpneo"]]
    hi = str(world.node.agreement.rank_of("JPN", "秘"))
    assert world.names["hi-rel-nzl"] in _results(world.client("sato"), level=hi)
    assert set(_results(tanaka, q="reef")) == set(world.objects) - {world.names["hi-rel-nzl"]}
    assert _results(tanaka, originator="NZL") == []
    assert _results(tanaka, q="reef", type="malware") == []
    assert _results(tanaka, until="2000-01-01") == []
    assert tanaka.get("/", params={"until": "yesterday"}).status_code == 400
    assert tanaka.get("/", params={"next": "12.nonsense"}).status_code == 400
    # one or two characters: the newest rows only, and the page says so
    assert world.names["open-harbour"] in _results(tanaka, q="op")
    assert 'id="short-text"' in tanaka.get("/", params={"q": "op"}).text
    assert 'id="short-text"' not in tanaka.get("/", params={"q": "ope"}).text


def test_a_search_for_a_name_as_written_finds_it(tmp_path: Path) -> None:
    """The console searches for the text case-insensitively (docs/console.md): it sent
    `text.casefold()`, and the node re-checks the served name with casefold. But the
    index (FTS5's trigram folding on SQLite, lower() on PostgreSQL) did not fold as
    casefold does: "Straße".casefold() is "strasse", which neither store's text held,
    so searching for a name exactly as written found nothing (also ligatures such as
    "ﬁ", and the Greek final sigma), while `intelpact search` (casefold on both sides)
    found it. (`make test` runs this on both stores.)"""
    node = make_node(tmp_path / "jpn")
    node.people.add("pub", party="JPN", clearance="機密", password=password("pub"),
                    roles=["analyst", "publisher"])
    pub = node.people.as_person("pub").person
    cid = node.default_collection().collection_id
    named = {name: indicator(name) for name in ("Hafenstraße patrol", "ﬁsh market",
                                                 "ΟΔΥΣΣΕΥΣ tanker", "plain harbour")}
    status = node.publisher.publish(pub, cid, list(named.values()),
                                    marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0
    try:
        with serving(node) as url, httpx.Client(base_url=url, timeout=30) as client:
            login(client, "pub")
            for text, name in (("Hafenstraße", "Hafenstraße patrol"),
                               ("HAFENSTRASSE", "Hafenstraße patrol"),
                               ("ﬁsh", "ﬁsh market"), ("fish", "ﬁsh market"),
                               ("Οδυσσευς", "ΟΔΥΣΣΕΥΣ tanker"),
                               ("οδυσσευσ", "ΟΔΥΣΣΕΥΣ tanker")):
                assert _results(client, q=text) == [named[name]["id"]], text
    finally:
        node.close()


def test_control_characters_in_search_text_are_refused(world: World) -> None:
    sato = world.client("sato")
    for text in ("abc\x00", "abc\x00def", "reef\tharbour", "a\nb", "\x7fabc"):
        r = sato.get("/", params={"q": text})
        assert r.status_code == 400, (text, r.status_code)
        assert "Search text with a control character" in r.text
    assert sato.get("/", params={"q": "reef　harbour"}).status_code == 200  # U+3000


def test_an_unexpected_error_is_answered_once_by_the_console(
        world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The console answers its own unexpected errors (its 500 page, logged once): they
    never reach the TAXII application it is mounted on, which logged them again and
    reset the connection."""
    sato = world.client("sato")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a fault no request should see")

    monkeypatch.setattr(world.node, "find", broken)  # no input triggers one any more
    with caplog.at_level("ERROR"):
        for _ in range(3):  # the same connection, each time answered
            r = sato.get("/", params={"q": "reef"})
            assert r.status_code == 500 and "Internal error" in r.text
            assert r.headers["content-type"].startswith("text/html")
            assert "a fault no request should see" not in r.text
    errors = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert [rec.name for rec in errors] == ["intelpact.console"] * 3, errors
    monkeypatch.undo()
    assert sato.get("/", params={"q": "reef"}).status_code == 200


def test_page_banner_is_the_highest_label_shown(world: World) -> None:
    tanaka, suzuki = world.client("tanaka"), world.client("suzuki")
    top = re.compile(r'<div class="banner band-([a-z-]+)"[^>]*id="banner-top">([^<]+)</div>')
    band, text = top.search(tanaka.get("/").text).groups()
    assert band == "top-secret" and text.startswith("機密")
    band, text = top.search(tanaka.get(f"/objects/{world.names['open-harbour']}").text).groups()
    assert (band, text) == ("unclassified", "指定なし // REL TO JPN, NZL")
    band, text = top.search(suzuki.get(f"/objects/{MISSING}").text).groups()
    assert band == "unclassified"


def test_the_banner_of_a_version_with_portions_follows_its_stored_label(
        tmp_path: Path) -> None:
    """A holder's reclassification relabels a stored version whose body still carries the
    old marking (docs/controls.md). The page of a version with withheld portions is
    labelled from what is served of its body, and must still show the stored label: a
    narrowed REL TO, here, that the body does not say."""
    top = re.compile(r'id="banner-top">([^<]+)</div>')
    with serving_world(tmp_path) as world:
        oid = world.names["hi-rel-nzl"]  # 秘 REL TO JPN, NZL; a 機密 description
        sato = world.client("sato")  # 秘: the description is withheld from him
        before = top.search(sato.get(f"/objects/{oid}").text)
        assert before is not None and before.group(1) == "秘 // REL TO JPN, NZL"
        store = world.node.store
        row = store.held([oid])[0]
        known = store.labels()
        narrowed = Label(world.node.agreement.id, known[row.label_id].rank, "JPN",
                         frozenset({"JPN"}))
        assert store.relabel(oid, "JPN", {row.version: (
            known[row.label_id].join(narrowed), known[row.banner_id].join(narrowed))}, []) == 1
        page = sato.get(f"/objects/{oid}").text
        assert "Withheld from you" in page
        after = top.search(page)
        assert after is not None and after.group(1) == "秘 // REL TO JPN", after.group(1)


def test_unknown_paths_get_html_but_taxii_keeps_its_shape(world: World) -> None:
    client = world.client()
    r = client.get("/no/such/page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    taxii = {"Accept": "application/taxii+json;version=2.1"}
    r = client.get("/no/such/page", headers=taxii)  # a TAXII client's mistake: TAXII's shape
    assert r.status_code == 404 and r.json()["http_status"] == "404"
    r = client.get("/taxii2/nothing-here")
    assert r.status_code == 404 and r.json()["http_status"] == "404"
    r = client.get("/intel/no-such/")
    assert r.status_code == 404 and r.json()["http_status"] == "404"
    assert client.post("/taxii2/").status_code == 405
    assert client.get("/taxii2/").status_code == 406  # TAXII's own Accept rule


def test_served_with_create_app_and_secure_cookies_on_tls(tmp_path: Path) -> None:
    node = make_node(tmp_path / "tls", tls=True)
    node.people.add("kato", party="JPN", clearance="秘", password=password("kato"))
    with serving(node) as url, ExitStack() as stack:
        assert url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(node.config.tls_cert))
        client = httpx.Client(base_url=url, verify=trust, follow_redirects=False)
        stack.callback(client.close)
        r = login(client, "kato")
        cookie = next(c for c in r.headers.get_list("set-cookie")
                      if c.startswith("intelpact_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie
        assert client.get("/").status_code == 200
        assert client.get("/static/console.css").status_code == 200
    node.close()


def test_security_headers_and_no_external_resources(world: World) -> None:
    r = world.client("tanaka").get("/publish")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert r.headers["cache-control"] == "no-store"
    for attr in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        assert attr.startswith(("/", "#")), attr


def test_relationships_both_ways_only_those_the_viewer_may_see(world: World) -> None:
    node = world.node
    tanaka = node.people.as_person("tanaka").person
    cid = node.default_collection().collection_id
    target, source = indicator("linked-target"), indicator("linked-source")
    open_ = MarkingRequest("指定なし", ("JPN", "NZL"))

    def rel(kind: str, src: str, dst: str) -> dict[str, object]:
        return {"type": "relationship", "spec_version": "2.1", "id": stix_id("relationship"),
                "created": T0, "modified": T0, "relationship_type": kind,
                "source_ref": src, "target_ref": dst}

    outgoing = rel("indicates", target["id"], source["id"])
    incoming = rel("based-on", source["id"], target["id"])
    hidden = rel("attributed-to", source["id"], target["id"])
    sighting = {"type": "sighting", "spec_version": "2.1", "id": stix_id("sighting"),
                "created": T0, "modified": T0, "sighting_of_ref": target["id"], "count": 3}
    unrelated = rel("indicates", source["id"], world.names["open-harbour"])
    for objs, marking in (([target, source, outgoing, incoming, sighting, unrelated], open_),
                          ([hidden], MarkingRequest("極秘", ("JPN",)))):
        status = node.publisher.publish(tanaka, cid, objs, marking=marking)
        assert status.body["failure_count"] == 0, status.body
    links = re.compile(r'href="/objects/((?:relationship|sighting)--[^"]+)"')
    count = re.compile(r'<p class="note" id="linked-count">(\d+) ')
    page = world.client("sato").get(f"/objects/{target['id']}").text
    assert set(links.findall(page)) == {outgoing["id"], incoming["id"], sighting["id"]}
    assert count.search(page).group(1) == "3"  # type: ignore[union-attr]
    assert hidden["id"] not in page and "attributed-to" not in page
    assert f'This object <a href="/objects/{outgoing["id"]}">indicates</a>' in page
    assert f'linked-source</a> <a href="/objects/{incoming["id"]}">based-on</a>' in page
    assert "指定なし" in page.split('id="banner-top">', 1)[1][:40]
    page = world.client("tanaka").get(f"/objects/{target['id']}").text
    assert set(links.findall(page)) == {outgoing["id"], incoming["id"], sighting["id"],
                                        hidden["id"]}
    assert count.search(page).group(1) == "4"  # type: ignore[union-attr]
    # the hidden relationship raises the banner of the page that shows it
    assert page.split('id="banner-top">', 1)[1].startswith("極秘")
    # every link found was read through Node.find, audited as a console read
    reads = node.audit.find(AuditFilter(kinds=("read",), object_id=hidden["id"]))
    assert any(json.loads(e.body).get("via") == "console-object" for e in reads)


# -- how the console reads a form ------------------------------------------------------------

BOUNDARY = "reviewboundary"


def _chunked_upload(size: int) -> Iterator[bytes]:
    """A multipart form with one file part of ``size`` bytes, sent chunked (no
    Content-Length), as any client may."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"bundle\"; "
           f"filename=\"x.json\"\r\nContent-Type: application/json\r\n\r\n").encode()
    sent = 0
    while sent < size:
        yield b"a" * 65_536
        sent += 65_536
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _counting(app: ASGIApp, received: list[int]) -> ASGIApp:
    """``app``, counting in ``received`` the body bytes it reads of each request."""
    async def counted_app(scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            received.append(len(message.get("body", b"")))
            return message
        await app(scope, counted, send)
    return counted_app


@contextmanager
def _small_console(folder: Path, **limits: float) -> Iterator[tuple[str, list[int]]]:
    """A JPN node (``pub`` publishes) whose TAXII API and console are served with
    ``limits`` in its config; yields its URL and the body bytes its app read."""
    node = make_node(folder)
    node.people.add("pub", party="JPN", clearance="秘", roles=["analyst", "publisher"],
                    password=password("pub"))
    node.config = dataclasses.replace(node.config, **limits)
    app, _, options = serve_console(node)
    received: list[int] = []
    try:
        with _in_thread(_counting(app, received), options):
            yield f"http://127.0.0.1:{options['port']}", received
    finally:
        node.close()


@pytest.mark.parametrize(("path", "who", "status"), [
    ("/login", None, 413), ("/publish", None, 403), ("/publish", "pub", 413)])
def test_an_anonymous_chunked_upload_is_not_read_past_the_limit(
        tmp_path: Path, path: str, who: str | None, status: int) -> None:
    """docs/console.md: an upload is "at most the API root's max_content_length", and the
    TAXII API reads no body before it knows who is asking. The console read the whole
    form of every POST before the session (on /login: anything) was checked, and bounded
    it only by a declared Content-Length: a chunked body carrying a file part was read to
    its end and spooled to disk whatever its size, for anyone who could connect (no body
    deadline either: body_timeout was TAXII's). Here 3 MiB against a 1 KiB limit: a
    stranger's /publish form is refused unread (403), a log-in form or a publisher's
    upload is cut off at its limit (413), and the node reads a small part of it."""
    with _small_console(tmp_path / "jpn", max_content_length=1024) as (url, received), \
            httpx.Client(base_url=url, timeout=60) as client:
        if who is not None:
            login(client, who)
        received.clear()
        answer = client.post(path, content=_chunked_upload(3 * 1024 * 1024), headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert answer.status_code == status, (answer.status_code, answer.text[:200])
    assert answer.headers["connection"] == "close"
    assert sum(received) < 256 * 1024, f"{sum(received):,} bytes of the body were read"


def test_an_anonymous_slow_form_is_cut_off(tmp_path: Path) -> None:
    """docs/node.md ("Limits"): a client gets body_idle_timeout seconds for each part of
    a body and body_timeout in all, so a slow sender cannot hold a connection (and, with
    max_connections of them, the whole listener: TAXII and console share it). The
    console's forms were read by Starlette's request.form() with no deadline, before any
    session was checked: an anonymous client trickling a form to /login held its
    connection as long as it liked. With both timeouts at 1-2 s, a body sent over 8 s
    must be cut off (408 or the connection closed) long before its end."""
    pulled = []

    def slow() -> Iterator[bytes]:
        for i in range(16):
            pulled.append(i)
            yield b"name=" if i == 0 else b"a"
            time.sleep(0.5)

    with _small_console(tmp_path / "jpn", body_idle_timeout=1.0, body_timeout=2.0) as (
            url, _), httpx.Client(base_url=url, timeout=30) as client:
        try:
            status: int | None = client.post("/login", content=slow(), headers={
                "Content-Type": "application/x-www-form-urlencoded"}).status_code
        except httpx.HTTPError:
            status = None  # the server closed the connection: cut off
    assert len(pulled) < 12, f"the whole slow body was read ({len(pulled)} parts, {status})"
    assert status in (408, None)
