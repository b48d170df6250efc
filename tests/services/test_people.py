"""People: adding (checked against the agreement), passwords, tokens, login throttling."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from intelpact.services.credentials import LoginThrottle, hash_password, token_digest
from intelpact.services.node import Node
from intelpact.services.people import AuthError, People, PeopleError
from intelpact.store.base import AuditFilter

from helpers import make_node

PW = "a long password here"


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[Node]:
    """A node of its own for each test: failed logins are counted for the whole node
    (Store.login_failed), so one test's guesses would lock another's names."""
    n = make_node(tmp_path / "jpn")
    yield n
    n.close()


@pytest.fixture(scope="module")
def pw_hash() -> str:
    """One argon2 hash of PW, shared (each hash costs 50-300 ms)."""
    return hash_password(PW)


def add_with_password(node: Node, pw_hash: str, name: str, party: str = "JPN",
                      clearance: str = "Hi") -> None:
    node.people.add(name, party=party, clearance=clearance)
    node.store.set_password(name, pw_hash)


def fresh(node: Node, limit: int = 5) -> People:
    """A People over the same store with its own throttle and cache (another server)."""
    return People(node.policy, node.store, node.audit,
                  LoginThrottle(limit=limit, window=300, lockout=300))


# -- adding --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "", "   ", "a:b", "a/b", "a\\b", "nul\x00", "tab\tname", "new\nline", "esc\x1b[31m",
    "bidi\u202egnp.exe", "zero\u200bwidth", "line\u2028sep", "x" * 65,
])
def test_add_rejects_bad_names(node: Node, name: str) -> None:
    with pytest.raises(PeopleError, match="invalid name") as info:
        node.people.add(name, party="JPN", clearance="Hi")
    assert info.value.hint and "1-64 characters" in info.value.hint


def test_add_accepts_unicode_names_and_strips(node: Node) -> None:
    rec = node.people.add("  田中 太郎  ", party="JPN", clearance="秘")
    assert rec.name == "田中 太郎"
    assert node.people.get("田中 太郎").clearance == "秘"
    assert node.people.add("x" * 64, party="NZL", clearance="RESTRICTED").name == "x" * 64


@pytest.mark.parametrize(("party", "words", "stored"), [
    ("JPN", "極秘", "極秘"),
    ("JPN", "Gokuhi", "極秘"),
    ("JPN", "gokuhi", "極秘"),
    ("JPN", "特定秘密", "極秘"),        # an alias of 極秘
    ("JPN", "Tokutei Himitsu", "極秘"),
    ("JPN", "Kimitsu", "機密"),
    ("NZL", "SECRET", "SECRET"),
    ("NZL", "secret", "SECRET"),
    ("NZL", "TS", "TOP SECRET"),       # the abbreviation
])
def test_clearance_in_national_words(node: Node, party: str, words: str, stored: str) -> None:
    name = f"c-{party}-{words}"
    rec = node.people.add(name, party=party, clearance=words)
    assert rec.clearance == stored
    assert node.people.as_person(name).person.clearance == stored


def test_clearance_must_be_the_persons_own_words(node: Node) -> None:
    with pytest.raises(PeopleError, match=r"NZL has no level 'Gokuhi'.*SECRET"):
        node.people.add("nz-gokuhi", party="NZL", clearance="Gokuhi")
    with pytest.raises(PeopleError, match=r"JPN has no level 'SECRET'; its levels are: .*極秘"):
        node.people.add("jp-secret", party="JPN", clearance="SECRET")


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"party": "AUS", "clearance": "SECRET"}, "AUS is not a party"),
    ({"party": "JPN", "clearance": "Hi", "caveats": ["NOFORN"]}, "caveat 'NOFORN'.*NZEO"),
    ({"party": "JPN", "clearance": "Hi", "caveats": ["NZEO"]}, "JPN national cannot hold NZEO"),
    ({"party": "JPN", "clearance": "Hi", "communities": ["SPACE"]},
     "community 'SPACE'.*MARITIME"),
    ({"party": "JPN", "clearance": "Hi", "roles": ["admin"]},
     "unknown role 'admin'.*security-officer"),
])
def test_add_refuses_what_the_agreement_does_not_know(node: Node, kwargs: dict[str, object],
                                                       pattern: str) -> None:
    with pytest.raises(PeopleError, match=pattern):
        node.people.add("refused", **kwargs)  # type: ignore[arg-type]
    assert node.store.person("refused") is None


def test_add_password_rules(node: Node) -> None:
    with pytest.raises(PeopleError, match="password too short") as info:
        node.people.add("shortpw", party="JPN", clearance="Hi", password="elevenchars")
    assert info.value.hint == "use at least 12 characters"
    with pytest.raises(PeopleError, match="not valid Unicode"):
        node.people.add("surrogate", party="JPN", clearance="Hi", password="\ud800" * 12)
    assert node.store.person("shortpw") is None


def test_names_are_never_reused(node: Node) -> None:
    node.people.add("once", party="JPN", clearance="Hi")
    node.people.revoke("once")
    with pytest.raises(Exception, match="already exists"):
        node.people.add("once", party="JPN", clearance="Hi")
    with pytest.raises(PeopleError, match="already revoked"):
        node.people.revoke("once")
    with pytest.raises(PeopleError, match="no person named 'nobody'"):
        node.people.revoke("nobody")


def test_stored_sets_are_sorted_and_deduplicated(node: Node) -> None:
    rec = node.people.add("sets", party="JPN", clearance="Gokuhi",
                          communities=["MARITIME", "CLIMATE", "MARITIME"],
                          roles=["publisher", "analyst"], caveats=["JPNEO"])
    assert rec.communities == ("CLIMATE", "MARITIME")
    assert rec.roles == ("analyst", "publisher")
    p = node.people.as_person("sets")
    assert p.has_role("publisher") and not p.has_role("operator")
    assert p.person.caveats == frozenset({"JPNEO"})


# -- login ---------------------------------------------------------------------------------

def test_add_stores_an_argon2_hash(node: Node) -> None:
    rec = node.people.add("hashed", party="NZL", clearance="SECRET", password=PW)
    assert rec.password_hash and rec.password_hash.startswith("$argon2id$")
    assert PW not in rec.password_hash
    assert node.store.person("hashed").password_hash == rec.password_hash  # type: ignore[union-attr]
    assert fresh(node).login("hashed", PW).name == "hashed"


def test_login_success_and_failure(node: Node, pw_hash: str) -> None:
    add_with_password(node, pw_hash, "login-ok", "NZL", "SECRET")
    people = fresh(node)
    p = people.login("login-ok", PW, "10.0.0.1")
    assert p.name == "login-ok" and p.person.party == "NZL"
    for wrong in (PW + "!", ""):
        with pytest.raises(AuthError) as info:
            people.login("login-ok", wrong, "10.0.0.1")
        assert info.value.message == "authentication failed"
        assert info.value.retry_after is None
    with pytest.raises(AuthError) as info:  # an unknown name fails the same way
        people.login("nobody-at-all", PW, "10.0.0.1")
    assert info.value.message == "authentication failed"


def test_a_login_with_a_nul_in_the_name_is_a_failed_login_on_either_store(
        node: Node) -> None:
    """A name with a NUL is nobody's: on SQLite the login failed like any wrong name
    (AuthError: TAXII's 401, counted against the name and the client address, audited
    as `login-failure`). On PostgreSQL the person look-up raised StoreError ("a text
    value holds a NUL"), before the failure was counted or audited: TAXII answered 400
    "Bad request" naming the store's problem, the console 500, and the attempt left no
    trace in the log. (`make test` runs this on both stores.)"""
    people = fresh(node, limit=1)
    before = len(node.audit.find(AuditFilter(kinds=("login-failure",), limit=1000)))
    with pytest.raises(AuthError) as info:
        people.login("tanaka\x00", "a-wrong-password", client="192.0.2.7")
    assert info.value.message == "authentication failed" and info.value.retry_after is None
    failures = node.audit.find(AuditFilter(kinds=("login-failure",), limit=1000))
    assert len(failures) == before + 1
    assert json.loads(failures[-1].body)["client"] == "192.0.2.7"
    with pytest.raises(AuthError) as info:  # counted: the client is locked out now
        people.login("someone-else", PW, client="192.0.2.7")
    assert info.value.retry_after is not None


def test_a_token_only_person_cannot_log_in_with_a_password(node: Node) -> None:
    node.people.add("tokens-only", party="JPN", clearance="Hi")
    with pytest.raises(AuthError):
        fresh(node).login("tokens-only", "")
    with pytest.raises(AuthError):
        fresh(node).login("tokens-only", PW)


def test_throttle_per_name(node: Node, pw_hash: str) -> None:
    add_with_password(node, pw_hash, "victim")
    people = fresh(node, limit=2)
    for i in range(2):  # from different clients: the name is what is counted
        with pytest.raises(AuthError) as info:
            people.login("victim", "guess", f"10.1.0.{i}")
        assert info.value.retry_after is None
    with pytest.raises(AuthError) as info:  # now even the right password is refused
        people.login("victim", PW, "10.1.0.99")
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 300
    assert "too many failed logins" in info.value.message
    # other names are unaffected
    add_with_password(node, pw_hash, "bystander")
    assert people.login("bystander", PW, "10.1.0.99").name == "bystander"


def test_failed_logins_are_counted_for_the_whole_node(node: Node, pw_hash: str) -> None:
    """Two processes of one node (`serve --workers 2`: a People each, with its own
    throttle) share the count of failed logins: two guesses in each lock the name at a
    limit of four, in both, and over a restart. Before, each process counted its own
    (a guesser had N times the attempts with N workers, and a fresh set after each
    restart). A lock that ended, and a right password, start the count again."""
    add_with_password(node, pw_hash, "shared")
    add_with_password(node, pw_hash, "bystander")

    def worker() -> People:
        return People(node.policy, node.store, node.audit,
                      LoginThrottle(limit=4, window=300, lockout=2))

    first, second = worker(), worker()
    for i, people in enumerate((first, second, first, second)):
        with pytest.raises(AuthError) as info:
            people.login("shared", "guess", f"10.5.0.{i}")
        assert info.value.retry_after is None, i
    for people in (first, second, worker()):  # both workers, and one started since
        with pytest.raises(AuthError) as info:
            people.login("shared", PW, "10.5.0.9")
        assert info.value.retry_after is not None and 0 < info.value.retry_after <= 2
    assert first.login("bystander", PW, "10.5.0.9").name == "bystander"
    row = node.store.login_lock(token_digest("name:shared"))
    assert row[0] > 0 and "shared" not in repr(row)  # kept by digest only
    time.sleep(2.1)  # the lock ends; a right password clears the count
    assert second.login("shared", PW, "10.5.0.9").name == "shared"
    assert node.store.login_lock(token_digest("name:shared")) == (0.0, 0)
    for i in range(3):  # three more guesses, in a new count: not locked
        with pytest.raises(AuthError) as info:
            worker().login("shared", "guess", f"10.5.1.{i}")
        assert info.value.retry_after is None


def test_throttle_per_client(node: Node, pw_hash: str) -> None:
    add_with_password(node, pw_hash, "fine")
    people = fresh(node, limit=2)
    for i in range(2):  # one client trying different names
        with pytest.raises(AuthError):
            people.login(f"spray-{i}", "guess", "10.2.0.1")
    with pytest.raises(AuthError) as info:
        people.login("fine", PW, "10.2.0.1")
    assert info.value.retry_after is not None
    assert people.login("fine", PW, "10.2.0.2").name == "fine"  # another client is fine


def test_success_resets_the_count(node: Node, pw_hash: str) -> None:
    add_with_password(node, pw_hash, "forgetful")
    people = fresh(node, limit=2)
    for client in ("10.3.0.1", "10.3.0.2"):
        with pytest.raises(AuthError):
            people.login("forgetful", "typo", client)
        people.login("forgetful", PW, client)  # resets: never two failures in a row


def test_failed_logins_with_huge_names_do_not_pin_memory(node: Node) -> None:
    """No name longer than 64 characters can be a person's (people._check_name), yet
    People.login keyed its throttles by the name as given, and kept each key until the
    table held 100,000 of them (LoginThrottle evicts only then). The console's log-in
    form took a field of up to max_content_length (10 MiB by default), so each wrong
    guess from one address pinned up to 10 MiB, thirty per address per lock-out period,
    up to 100,000 keys: one client grew the node's memory by gigabytes an hour. Here 30
    failures with 1 MB names must not leave ~30 MB behind; each is still audited (the
    name's first 64 characters, pseudonymised) and counted against the client address."""
    people = People(node.policy, node.store, node.audit)  # the default throttles
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(30):
            name = f"{i:02d}" + "n" * 1_000_000
            with pytest.raises(AuthError) as refused:
                people.login(name, "wrong-password", "198.51.100.7")
            assert refused.value.retry_after is None
            del name
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 2_000_000, f"{kept:,} bytes kept after 30 refused logins"
    with pytest.raises(AuthError) as locked:  # thirty from one address lock it
        people.login("29" + "n" * 1_000_000, "wrong-password", "198.51.100.7")
    assert locked.value.retry_after is not None
    failures = [json.loads(e.body) for e in node.audit.find(AuditFilter(
        kinds=("login-failure",))) if json.loads(e.body).get("client") == "198.51.100.7"]
    assert len(failures) == 31
    assert {f["subject"] for f in failures} == {node.audit.pseudonyms.of(
        f"{i:02d}" + "n" * 62 + "…") for i in range(30)}


# -- revocation, tokens, the verified-password cache ---------------------------------------

def test_revoked_person_cannot_log_in_or_use_tokens(node: Node, pw_hash: str) -> None:
    add_with_password(node, pw_hash, "leaver", "NZL", "SECRET")
    server = fresh(node)                      # a running server's People
    token = node.people.issue_token("leaver", "laptop")
    assert server.login("leaver", PW).name == "leaver"   # now cached by the server
    assert server.login_token(token).name == "leaver"
    node.people.revoke("leaver")              # by the operator, through another People
    with pytest.raises(AuthError):
        server.login("leaver", PW)
    with pytest.raises(AuthError):
        server.login_token(token)
    with pytest.raises(PeopleError, match="revoked"):
        node.people.issue_token("leaver")
    with pytest.raises(PeopleError, match="revoked"):
        node.people.as_person("leaver")


def test_tokens(node: Node) -> None:
    node.people.add("holder", party="JPN", clearance="Hi")
    a, b = node.people.issue_token("holder", "a"), node.people.issue_token("holder", "b")
    assert a != b
    assert node.people.login_token(a).name == "holder"
    assert node.people.revoke_tokens("holder", a) == 1
    with pytest.raises(AuthError):
        node.people.login_token(a)
    assert node.people.login_token(b).name == "holder"
    assert node.people.revoke_tokens("holder", a) == 0     # already revoked
    assert node.people.revoke_tokens("holder") == 1        # the rest
    with pytest.raises(AuthError):
        node.people.login_token(b)
    for bogus in ("", "ipt_", "ipt_" + "A" * 43, a[:-1]):
        with pytest.raises(AuthError):
            node.people.login_token(bogus)
    with pytest.raises(PeopleError, match="no person"):
        node.people.issue_token("nobody")


def test_password_change_ends_cached_logins(node: Node, pw_hash: str) -> None:
    add_with_password(node, pw_hash, "changer")
    server = fresh(node)
    assert server.login("changer", PW).name == "changer"  # verified and cached
    server.set_password("changer", "a brand new password")
    with pytest.raises(AuthError):
        server.login("changer", PW)
    assert server.login("changer", "a brand new password").name == "changer"
    with pytest.raises(PeopleError, match="too short"):
        server.set_password("changer", "short")
    with pytest.raises(PeopleError, match="no person"):
        server.set_password("nobody", "a long enough password")


def test_password_change_elsewhere_ends_cached_logins(node: Node, pw_hash: str) -> None:
    """The cache is per process: a change made by another process must end it too.

    The new hash is of the *same* password: only a check against the stored hash
    (not against the password) can tell the cached entry is stale; a second
    successful login proves the cache was not used blindly."""
    add_with_password(node, pw_hash, "changer2")
    server = fresh(node)
    assert server.login("changer2", PW).name == "changer2"
    node.store.set_password("changer2", "$argon2id$v=19$m=65536,t=3,p=4$bm90IHRoaXM$bm90IHRoaXM")
    with pytest.raises(AuthError):   # the old password no longer matches what is stored
        server.login("changer2", PW)
    node.store.set_password("changer2", pw_hash)
    assert server.login("changer2", PW).name == "changer2"


def test_revoked_person_password_cannot_be_changed(node: Node) -> None:
    node.people.add("gone", party="JPN", clearance="Hi")
    node.people.revoke("gone")
    with pytest.raises(PeopleError, match="revoked"):
        node.people.set_password("gone", "a long enough password")


def test_revocation_seen_by_another_node_process(tmp_path: Path, pw_hash: str) -> None:
    """Two Node objects on one directory stand for the server and the operator's CLI."""
    server = make_node(tmp_path / "jpn")
    try:
        server.people.add("remote", party="JPN", clearance="Hi")
        server.store.set_password("remote", pw_hash)
        token = server.people.issue_token("remote")
        assert server.people.login("remote", PW).name == "remote"
        cli = Node.open(tmp_path / "jpn")
        cli.people.revoke("remote")
        cli.close()
        with pytest.raises(AuthError):
            server.people.login("remote", PW)
        with pytest.raises(AuthError):
            server.people.login_token(token)
    finally:
        server.close()


def test_client_lockout_is_separate_and_not_reset_by_a_success(tmp_path: Path) -> None:
    from intelpact.services.credentials import LoginThrottle
    from intelpact.services.people import AuthError, People

    from helpers import make_node

    node = make_node(tmp_path / "n")
    people = People(node.policy, node.store, node.audit, throttle=LoginThrottle(limit=5),
                    client_throttle=LoginThrottle(limit=3))
    people.add("kiri", party="NZL", clearance="SECRET", password="kiri-long-password")
    for guess in ("a" * 12, "b" * 12):
        with pytest.raises(AuthError):
            people.login(f"guess-{guess[0]}", guess, client="10.0.0.9")
    assert people.login("kiri", "kiri-long-password", client="10.0.0.9").name == "kiri"
    with pytest.raises(AuthError) as third:  # the success did not reset the client count
        people.login("guess-c", "c" * 12, client="10.0.0.9")
    assert third.value.retry_after is None
    with pytest.raises(AuthError) as locked:
        people.login("kiri", "kiri-long-password", client="10.0.0.9")
    assert locked.value.retry_after is not None
    assert people.login("kiri", "kiri-long-password", client="10.0.0.10").name == "kiri"
    node.close()


def test_concurrent_guesses_are_bounded_as_sequential_ones(
        node: Node, pw_hash: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a login checked the throttle, verified the password (the slow KDF),
    then counted a failure: 20 wrong guesses made at once all passed the check before
    any was counted, and 20 passwords were tried where one after another 5 are. The
    guesses in flight count now: the sixth waits for one to end, and once five have
    failed the rest are refused as locked, with no password tried."""
    import threading

    from intelpact.services import people as people_module

    add_with_password(node, pw_hash, "concurrent")
    people = fresh(node, limit=5)
    real, lock = people_module.verify_password, threading.Lock()
    verifying, release = [0], threading.Event()

    def verify(password_hash: str, password: str) -> bool:
        with lock:
            verifying[0] += 1
        assert release.wait(60)
        return real(password_hash, password)

    monkeypatch.setattr(people_module, "verify_password", verify)
    outcomes: list[AuthError] = []

    def guess(i: int) -> None:
        try:
            people.login("concurrent", f"wrong guess number {i}", client=f"10.0.1.{i}")
        except AuthError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    try:
        # every guess is verifying, or five are and the other fifteen wait for them
        deadline = time.monotonic() + 60
        while not (verifying[0] == 20 or (verifying[0] == 5 and
                                          getattr(people.throttle, "waiting", 0) == 15)):
            assert time.monotonic() < deadline, (verifying, people.throttle.__dict__)
            time.sleep(0.01)
    finally:
        release.set()
        for t in threads:
            t.join(60)
    assert verifying[0] == 5
    assert len(outcomes) == 20
    assert sum(e.retry_after is None for e in outcomes) == 5  # wrong: counted
    assert sum(e.retry_after is not None for e in outcomes) == 15  # refused: locked
    with pytest.raises(AuthError) as locked:  # as after five guesses one after another
        people.login("concurrent", PW)
    assert locked.value.retry_after is not None
    people.flush_refusals()  # the refusals counted, recorded before the node closes


def test_a_login_verified_before_waits_for_no_guess_in_flight(node: Node, pw_hash: str) -> None:
    """A password verified within the cache's time costs no hash: it is answered at once
    (TAXII answers such a read on its event loop), not after the guesses at that name
    being checked (LoginThrottle.begin would wait for one of them to end)."""
    add_with_password(node, pw_hash, "cached")
    people = fresh(node, limit=5)
    assert people.login("cached", PW).name == "cached"
    for _ in range(5):  # five guesses at the name being checked
        assert people.throttle.begin("name:cached", time.monotonic()) is None
    assert people.verified("cached", PW)
    assert people.login("cached", PW).name == "cached"
