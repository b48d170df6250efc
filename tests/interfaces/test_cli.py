"""The `intelpact` command, driven for real: click's CliRunner on real node directories,
and the installed console script in a subprocess (errors: one line, a hint, exit 2)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from intelpact.crypto.tls import load_certificate, make_self_signed
from intelpact.interfaces.cli import main
from intelpact.interfaces.server import certificate_warning, plain_http_warning
from intelpact.services.federation import make_card
from intelpact.services.node import Node
from intelpact.services.people import AuthError
from intelpact.store.base import AuditFilter

from helpers import AGREEMENTS, ROOT, indicator

JN = AGREEMENTS / "jpn-nzl.toml"
SAMPLE = ROOT / "samples" / "maritime-iuu.json"
PASSWORD = "a long password here"
INTELPACT = Path(sys.executable).parent / "intelpact"


def run(*args: object, input: str | bytes | None = None, code: int = 0) -> Result:
    runner = CliRunner(env={"COLUMNS": "400"})
    result = runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return result


def one_line_error(result: Result, *patterns: str, hint: str | None = None) -> str:
    """The error shape: 'error: ...' on one line, then at most a 'hint: ...' line (required
    when ``hint`` is given), nothing else."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert len(lines) in ((2,) if hint else (1, 2)), result.stderr
    if len(lines) == 2:
        assert lines[1].startswith("hint: ") and (hint or "") in lines[1], result.stderr
    assert "Traceback" not in result.output
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def bundle(*objects: dict[str, Any]) -> str:
    return json.dumps({"type": "bundle", "id": "bundle--3f0c6a4e-1b7a-4a55-9a33-1c0c0c0c0c0c",
                       "objects": list(objects)})


@dataclass
class World:
    """A JPN node made with the CLI, with four people and three publications."""

    dir: Path
    maritime: list[str]                       # ids published 極秘 // MARITIME // REL JPN, NZL
    jpn_only: str = ""                        # 秘 // REL TO JPN
    eyes_only: str = ""                       # 秘 // JPNEO
    outputs: dict[str, Result] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    d = tmp_path_factory.mktemp("cli") / "jpn-node"
    w = World(d, [o["id"] for o in json.loads(SAMPLE.read_text())["objects"]])
    w.outputs["init"] = run("init", d, "--party", "jpn", "--agreement", JN)
    # tanaka: the only one with a password (argon2 is slow on purpose)
    w.outputs["tanaka"] = run("user", "add", d, "tanaka", "--party", "JPN", "--clearance",
                              "極秘", "--role", "analyst", "--role", "publisher", "--community",
                              "maritime", "--caveat", "JPNEO", "--password-stdin",
                              input=PASSWORD + "\n")
    w.outputs["aroha"] = run("user", "add", d, "aroha", "--party", "NZL", "--clearance",
                             "SECRET", "--community", "MARITIME")
    w.outputs["kenji"] = run("user", "add", d, "kenji", "--party", "JPN", "--clearance",
                             "Gokuhi")
    w.outputs["sato"] = run("user", "add", d, "sato", "--party", "JPN", "--clearance", "Hi",
                            "--role", "publisher")
    w.outputs["publish-file"] = run("publish", d, SAMPLE, "--as", "tanaka", "--classification",
                                    "Gokuhi", "--rel", "JPN,NZL", "--community", "MARITIME")
    jpn_only = indicator("Harbour crane beacon")
    w.jpn_only = jpn_only["id"]
    w.outputs["publish-stdin"] = run("publish", d, "-", "--as", "tanaka", "--classification",
                                     "秘", "--rel", "jpn", input=bundle(jpn_only))
    eyes_only = indicator("Lighthouse keeper")
    w.eyes_only = eyes_only["id"]
    w.outputs["publish-caveat"] = run("publish", d, "-", "--as", "tanaka",
                                      "--classification", "Hi", "--caveat", "jpneo",
                                      input=json.dumps(eyes_only))  # a bare object
    return w


# -- init ----------------------------------------------------------------------------------

def test_init_output_and_directory(world: World) -> None:
    out = world.outputs["init"].stdout
    assert f"Initialised the JPN node in {world.dir}" in out
    assert "jpn-nzl-isa (sha256:" in out and "illustrative sample agreement" in out
    assert "serves     https://127.0.0.1:8401/taxii2/" in out
    assert f"Next: intelpact user add {world.dir} NAME --party JPN" in out
    for name in ("node.toml", "agreement.toml", "node.db", "keys/signing.pem", "tls/cert.pem",
                 "tls/key.pem"):
        assert (world.dir / name).is_file(), name


def test_init_options(tmp_path: Path) -> None:
    out = run("init", tmp_path / "nz", "--party", "NZL", "--agreement", JN, "--host", "::1",
              "--port", "9443", "--no-tls").stdout
    assert "serves     http://[::1]:9443/taxii2/" in out
    text = (tmp_path / "nz" / "node.toml").read_text()
    assert 'host = "::1"' in text and "port = 9443" in text and "tls = false" in text


def test_init_refuses_a_non_empty_directory(world: World) -> None:
    r = run("init", world.dir, "--party", "JPN", "--agreement", JN, code=2)
    one_line_error(r, "exists and is not empty", hint="init never overwrites")


def test_init_refuses_an_unknown_party(tmp_path: Path) -> None:
    r = run("init", tmp_path / "x", "--party", "AUS", "--agreement", JN, code=2)
    one_line_error(r, "AUS is not a party to agreement jpn-nzl-isa", hint="JPN, NZL")
    assert not (tmp_path / "x").exists()


def test_init_refuses_a_bad_agreement_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[agreement\n", encoding="utf-8")
    r = run("init", tmp_path / "x", "--party", "JPN", "--agreement", bad, code=2)
    one_line_error(r, re.escape(str(bad)), "not valid TOML", hint="TOML")
    bad.write_text('[agreement]\nid = "x"\n', encoding="utf-8")
    r = run("init", tmp_path / "x", "--party", "JPN", "--agreement", bad, code=2)
    one_line_error(r, re.escape(str(bad)) + ": schemes: missing", hint="add schemes")
    assert not (tmp_path / "x").exists()


def test_init_bad_host_leaves_nothing_behind(tmp_path: Path) -> None:
    r = run("init", tmp_path / "x", "--party", "JPN", "--agreement", JN, "--host", "no such",
            code=2)
    one_line_error(r, "'no such' is neither an IP address nor a DNS host name", hint="127.0.0.1")
    assert not (tmp_path / "x").exists()
    run("init", tmp_path / "x", "--party", "JPN", "--agreement", JN)  # the retry works


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])  # noqa: S104
def test_init_listening_on_every_interface_needs_a_public_host(tmp_path: Path,
                                                              wildcard: str) -> None:
    """`init --host 0.0.0.0` made a certificate naming 0.0.0.0 and a node whose card gave
    partners https://0.0.0.0:8402, an address none reaches. init now asks for the host
    partners and clients reach the node by, and leaves nothing behind."""
    r = run("init", tmp_path / "x", "--party", "JPN", "--agreement", JN, "--host", wildcard,
            code=2)
    one_line_error(r, rf"--host {re.escape(wildcard)} listens on every interface",
                   hint="--public-host")
    assert not (tmp_path / "x").exists()
    for public in ("0.0.0.0", "::", "0", "127.1", "https://node.example.org",  # noqa: S104
                   "node.example.org:8402", ""):
        r = run("init", tmp_path / "x", "--party", "JPN", "--agreement", JN, "--host",
                wildcard, "--public-host", public, code=2)
        one_line_error(r, r"public host")
        assert not (tmp_path / "x").exists()


def test_init_with_a_public_host(tmp_path: Path) -> None:
    """Listening on every interface, reached at node.example.org: the certificate names
    the public host (not 0.0.0.0), node.toml keeps both, the card gives the public host."""
    d = tmp_path / "jpn"
    out = run("init", d, "--party", "JPN", "--agreement", JN, "--host", "0.0.0.0",  # noqa: S104
              "--public-host", "Node.Example.org").stdout
    assert "serves     https://Node.Example.org:8401/taxii2/ (listening on 0.0.0.0)" in out
    text = (d / "node.toml").read_text()
    assert 'host = "0.0.0.0"\npublic_host = "Node.Example.org"\n' in text, text
    from cryptography import x509
    san = load_certificate(d / "tls" / "cert.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "node.example.org"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert json.loads(run("card", d).stdout)["url"] == "https://Node.Example.org:8402"
    # a public host alone (the node listens on 127.0.0.1 behind a forwarder)
    run("init", tmp_path / "nzl", "--party", "NZL", "--agreement", JN,
        "--public-host", "2001:db8::7")
    assert json.loads(run("card", tmp_path / "nzl").stdout)["url"] == \
        "https://[2001:db8::7]:8402"


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_init_cut_short_as_the_node_is_first_opened_leaves_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: BaseException) -> None:
    """init failed (a full disk, Ctrl-C) after the directory was made, as the database
    took the node's first collection: the half-made node stayed, `init` again said
    "exists and is not empty", and `publish` failed with an IndexError traceback."""
    from intelpact.store.sqlite import SQLiteStore

    def fail(*args: object, **kwargs: object) -> None:
        raise fault

    monkeypatch.setattr(SQLiteStore, "add_collection", fail)
    for d in (tmp_path / "new", tmp_path / "empty"):
        d.with_name("empty").mkdir(exist_ok=True)
        runner = CliRunner()
        result = runner.invoke(main, ["init", str(d), "--party", "JPN", "--agreement",
                                      str(JN)])
        assert result.exit_code != 0, result.output
        assert not d.exists() if d.name == "new" else not any(d.iterdir())
    monkeypatch.undo()
    run("init", tmp_path / "new", "--party", "JPN", "--agreement", JN)  # the retry works
    run("init", tmp_path / "empty", "--party", "JPN", "--agreement", JN)


# `intelpact init DIR` in a process that stops as it starts filling DIR, until told to go
# on (the file argv[1] + ".go"): the moment a second init of DIR meets it.
_INIT_PAUSED = """
import sys, time
from pathlib import Path
import intelpact.config as config
from intelpact.interfaces.cli import main
flag, real = Path(sys.argv[1]), config._fill_node_dir
def paused(*args, **kwargs):
    flag.write_text("paused")
    while not flag.with_suffix(".go").exists():
        time.sleep(0.01)
    return real(*args, **kwargs)
config._fill_node_dir = paused
main(sys.argv[2:], prog_name="intelpact")
"""


def _waits_on_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked on a file lock (a "->" line of /proc/locks)."""
    return any(line.split()[1] == "->" and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines())


def test_two_inits_of_one_directory_at_once_leave_one_node(tmp_path: Path) -> None:
    """Two `intelpact init DIR` at once: each found DIR empty, then both filled it. Here
    the second finished a node while the first was held; the first, going on, found
    keys/ made ("File exists") and removed DIR, the second's finished node with it. Now
    the second waits for the first, then refuses the node it made, which is left whole."""
    d, flag = tmp_path / "jpn", tmp_path / "first"
    args = ["init", str(d), "--party", "JPN", "--agreement", str(JN), "--no-tls"]
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.Popen([sys.executable, "-c", _INIT_PAUSED, str(flag), *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    second: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        second = subprocess.Popen([str(INTELPACT), *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        while second.poll() is None and not _waits_on_a_lock(second.pid):
            assert time.monotonic() < deadline, "the second init neither ended nor waited"
            time.sleep(0.01)
        flag.with_suffix(".go").touch()
        outs = [p.communicate(timeout=60) for p in (first, second)]
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert first.returncode == 0, outs[0]
    assert second.returncode == 2, outs[1]
    err = outs[1][1].decode()
    assert err.startswith(f"error: {d}: exists and is not empty"), err
    assert "Traceback" not in err
    node = Node.open(d)  # one node, whole: its key is the one its database was made with
    try:
        made = [json.loads(e.body) for e in node.audit.find(AuditFilter(kinds=("node-init",)))]
        assert [e["key_id"] for e in made] == [node.identity.key_id]
    finally:
        node.close()


def test_init_in_postgresql(tmp_path: Path) -> None:
    """docs/deployment.md said to init, then set database = "postgresql://…" in node.toml:
    the node in PostgreSQL had no collection (publish: an IndexError traceback), and its
    first command raised a log-cut alert (audit-head.json was the SQLite log's).
    `init --database` makes the node in PostgreSQL."""
    import pg

    d = tmp_path / "jpn"
    url = pg.database_url("cli")
    run("init", d, "--party", "JPN", "--agreement", JN, "--database", url)
    assert f'database = "{url}"' in (d / "node.toml").read_text()
    assert not (d / "node.db").exists()
    added = run("user", "add", d, "pub", "--party", "JPN", "--clearance", "秘", "--role",
                "publisher")
    assert "ALERT" not in added.output, added.output
    r = run("publish", d, SAMPLE, "--as", "pub", "--classification", "秘")
    assert "5 accepted, 0 rejected" in r.stdout, r.stdout
    assert "No alerts." in run("audit", "alerts", d).stdout
    # a second init on that database: refused as such ("audit-pseudonyms.key missing")
    one_line_error(run("init", tmp_path / "again", "--party", "JPN", "--agreement", JN,
                       "--database", url, code=2),
                   r"holds a node already \(1 collection\(s\), \d+ audit event\(s\)\)",
                   hint="empty database")
    assert not (tmp_path / "again").exists()
    # a node pointed later at a store it was not made in: an error that says so
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    toml = copy / "node.toml"
    toml.write_text(toml.read_text().replace(url, pg.database_url("cli")))
    run("user", "add", copy, "pub", "--party", "JPN", "--clearance", "秘", "--role",
        "publisher")
    one_line_error(run("publish", copy, SAMPLE, "--as", "pub", "--classification", "秘",
                       code=2), "holds no collection", hint="--database")
    one_line_error(run("init", tmp_path / "bad", "--party", "JPN", "--agreement", JN,
                       "--database", "PostgreSQL://x@y/z", code=2),
                   r"node\.database: a PostgreSQL:// URL is no store")
    assert not (tmp_path / "bad").exists()


def test_init_usage_errors(tmp_path: Path) -> None:
    r = run("init", tmp_path / "x", "--party", "JPN", "--agreement", tmp_path / "none", code=2)
    assert "does not exist" in r.stderr
    r = run("init", tmp_path / "x", "--agreement", JN, code=2)
    assert "Missing option '--party'" in r.stderr
    r = run("init", tmp_path / "x", "--party", "JPN", "--agreement", JN, "--port", "0", code=2)
    assert "--port" in r.stderr


def test_a_missing_node_directory(tmp_path: Path) -> None:
    r = run("user", "list", tmp_path / "nowhere", code=2)
    one_line_error(r, "no such node directory", hint="intelpact init")


# -- user ----------------------------------------------------------------------------------

def test_user_add_output(world: World) -> None:
    assert world.outputs["tanaka"].stdout.strip() == \
        "Added tanaka: JPN, cleared 極秘, roles analyst, publisher"
    assert world.outputs["kenji"].stdout.strip() == "Added kenji: JPN, cleared 極秘, roles analyst"
    assert "cleared SECRET" in world.outputs["aroha"].stdout
    assert "cleared 秘, roles publisher" in world.outputs["sato"].stdout


def test_user_add_password_stdin_sets_a_working_password(world: World) -> None:
    node = Node.open(world.dir)
    try:
        assert node.people.login("tanaka", PASSWORD).name == "tanaka"
        with pytest.raises(AuthError):
            node.people.login("tanaka", PASSWORD + "\n")  # the newline was stripped
        assert node.people.get("kenji").password_hash is None  # no --password-stdin
    finally:
        node.close()


def test_user_list(world: World) -> None:
    out = run("user", "list", world.dir).stdout
    rows = {line.split("│")[1].strip(): line for line in out.splitlines()
            if line.startswith("│")}
    assert {"tanaka", "aroha", "kenji", "sato"} <= set(rows)
    assert re.search(r"tanaka\s*│ JPN\s*│ 極秘\s*│ JPNEO\s*│ MARITIME\s*│ analyst, publisher",
                     rows["tanaka"])
    assert "NZL" in rows["aroha"] and "SECRET" in rows["aroha"] and "active" in rows["aroha"]


def test_user_add_wrong_clearance_names_the_levels(world: World) -> None:
    r = run("user", "add", world.dir, "nz1", "--party", "NZL", "--clearance", "Gokuhi", code=2)
    one_line_error(r, "NZL has no level 'Gokuhi'; its levels are: UNCLASSIFIED, .*SECRET, "
                   "TOP SECRET")
    r = run("user", "add", world.dir, "jp1", "--party", "JPN", "--clearance", "SECRET", code=2)
    one_line_error(r, "JPN has no level 'SECRET'; its levels are: "
                   "指定なし, 取扱注意, 秘, 極秘, 機密")


@pytest.mark.parametrize(("args", "pattern"), [
    (["--party", "AUS", "--clearance", "SECRET"], "AUS is not a party"),
    (["--party", "JPN", "--clearance", "Hi", "--caveat", "NZEO"], "cannot hold NZEO"),
    (["--party", "JPN", "--clearance", "Hi", "--community", "SPACE"], "community 'SPACE'"),
])
def test_user_add_refusals(world: World, args: list[str], pattern: str) -> None:
    one_line_error(run("user", "add", world.dir, "refused", *args, code=2), pattern)


def test_user_add_bad_role_is_a_usage_error(world: World) -> None:
    r = run("user", "add", world.dir, "x", "--party", "JPN", "--clearance", "Hi", "--role",
            "admin", code=2)
    assert "'admin' is not one of 'analyst', 'publisher', 'security-officer', 'operator'" \
        in r.stderr


def test_user_add_bad_name_and_duplicate(world: World) -> None:
    r = run("user", "add", world.dir, "[/x]", "--party", "JPN", "--clearance", "Hi", code=2)
    one_line_error(r, re.escape("invalid name '[/x]'"), hint="1-64 characters")
    r = run("user", "add", world.dir, "tanaka", "--party", "JPN", "--clearance", "Hi", code=2)
    one_line_error(r, "a person named 'tanaka' already exists", hint="never reused")


def test_user_add_password_stdin_errors(world: World) -> None:
    r = run("user", "add", world.dir, "shorty", "--party", "JPN", "--clearance", "Hi",
            "--password-stdin", input="too short\n", code=2)
    one_line_error(r, "password too short", hint="at least 12 characters")
    r = run("user", "add", world.dir, "shorty", "--party", "JPN", "--clearance", "Hi",
            "--password-stdin", input=b"long enough \xff password\n", code=2)
    one_line_error(r, "not UTF-8 text", hint="UTF-8")
    r = run("user", "add", world.dir, "shorty", "--party", "JPN", "--clearance", "Hi",
            "--password-stdin", input="", code=2)
    one_line_error(r, "password too short")


def test_user_revoke(world: World) -> None:
    run("user", "add", world.dir, "leaver", "--party", "JPN", "--clearance", "Hi")
    token = run("token", "issue", world.dir, "leaver").stdout.strip()
    assert run("user", "revoke", world.dir, "leaver").stdout.strip() == "Revoked leaver"
    assert re.search(r"leaver .*│ revoked 20\d\d-", run("user", "list", world.dir).stdout)
    node = Node.open(world.dir)
    try:
        with pytest.raises(AuthError):
            node.people.login_token(token)  # revoking a person revokes their tokens
    finally:
        node.close()
    one_line_error(run("user", "revoke", world.dir, "leaver", code=2), "already revoked")
    one_line_error(run("token", "issue", world.dir, "leaver", code=2), "revoked")
    one_line_error(run("get", world.dir, world.maritime[0], "--as", "leaver", code=2),
                   "leaver was revoked")
    one_line_error(run("user", "revoke", world.dir, "nobody", code=2),
                   "no person named 'nobody'", hint="intelpact user list")


# -- token ---------------------------------------------------------------------------------

def test_token_issue_and_revoke(world: World) -> None:
    run("user", "add", world.dir, "tok", "--party", "NZL", "--clearance", "SECRET")
    first = run("token", "issue", world.dir, "tok", "--label", "laptop").stdout.strip()
    second = run("token", "issue", world.dir, "tok").stdout.strip()
    third = run("token", "issue", world.dir, "tok").stdout.strip()
    assert re.fullmatch(r"ipt_[A-Za-z0-9_-]{43}", first) and len({first, second, third}) == 3
    node = Node.open(world.dir)
    try:
        assert node.people.login_token(first).name == "tok"
        out = run("token", "revoke", world.dir, "tok", "--token", first).stdout
        assert out.strip() == "Revoked 1 token(s) of tok"
        with pytest.raises(AuthError):
            node.people.login_token(first)  # a revoked token no longer authenticates
        assert node.people.login_token(second).name == "tok"
        assert "Revoked 2 token(s)" in run("token", "revoke", world.dir, "tok").stdout
        for t in (second, third):
            with pytest.raises(AuthError):
                node.people.login_token(t)
        assert "Revoked 0 token(s)" in run("token", "revoke", world.dir, "tok").stdout
    finally:
        node.close()
    one_line_error(run("token", "issue", world.dir, "nobody", code=2), "no person named")
    one_line_error(run("token", "revoke", world.dir, "nobody", code=2), "no person named")


# -- publish -------------------------------------------------------------------------------

def test_publish_summaries(world: World) -> None:
    assert re.fullmatch(r"Published as tanaka \(JPN\): 5 accepted, 0 rejected \(status "
                        r"[0-9a-f-]{36}\)\n", world.outputs["publish-file"].stdout)
    assert "1 accepted, 0 rejected" in world.outputs["publish-stdin"].stdout
    assert "1 accepted, 0 rejected" in world.outputs["publish-caveat"].stdout


def test_publish_again_is_idempotent(world: World) -> None:
    out = run("publish", world.dir, SAMPLE, "--as", "tanaka", "--classification", "Gokuhi",
              "--rel", "JPN,NZL", "--community", "MARITIME").stdout
    assert "5 accepted, 0 rejected" in out


def test_publish_above_clearance_is_all_rejected(world: World) -> None:
    r = run("publish", world.dir, SAMPLE, "--as", "sato", "--classification", "Gokuhi",
            code=1)
    assert "Published as sato (JPN): 0 accepted, 5 rejected" in r.stdout
    rejected = [line for line in r.stdout.splitlines() if line.startswith("  rejected ")]
    assert len(rejected) == 5
    assert all("clearance 秘 (CONFIDENTIAL) does not dominate 極秘 (SECRET)" in line
               for line in rejected)


def test_publish_partly_rejected(world: World) -> None:
    good = indicator("Partly good")
    bad = {**indicator("Partly bad"), "pattern_type": 7}
    r = run("publish", world.dir, "-", "--as", "tanaka", "--classification", "Hi",
            input=json.dumps([good, bad, "not an object"]))
    assert "1 accepted, 2 rejected" in r.stdout
    assert f"  rejected {bad['id']}: " in r.stdout
    assert "  rejected ?: not a JSON object" in r.stdout


def test_publish_a_file_that_is_not_json(world: World, tmp_path: Path) -> None:
    f = tmp_path / "notes.json"
    f.write_text("this is not JSON", encoding="utf-8")
    r = run("publish", world.dir, f, "--as", "tanaka", "--classification", "Hi", code=2)
    one_line_error(r, re.escape(str(f)), "invalid JSON", hint="STIX bundle")
    r = run("publish", world.dir, "-", "--as", "tanaka", "--classification", "Hi",
            input='{"objects": [', code=2)
    one_line_error(r, "^error: -: ", hint="as JSON")
    r = run("publish", world.dir, "-", "--as", "tanaka", "--classification", "Hi",
            input='"a string"', code=2)
    one_line_error(r, "not a STIX bundle, envelope, object or list of objects")
    r = run("publish", world.dir, tmp_path / "none.json", "--as", "tanaka",
            "--classification", "Hi", code=2)
    one_line_error(r, "cannot read: No such file or directory")


@pytest.mark.parametrize(("given", "pattern"), [
    # the bundle or envelope around the objects is checked as TAXII checks an envelope
    ('{"type": "bundle", "id": "bundle--x", "objects": []}', "identifier"),
    ('{"objects": [], "x_note": 1}', "only 'objects', 'more' and 'next'"),
    ('{"objects": {"type": "indicator"}}', "'objects' must be a list"),
    # nothing to publish: it said "0 accepted, 0 rejected" and exited 0
    ("[]", "holds no objects"),
    ('{"objects": []}', "holds no objects"),
])
def test_publish_checks_what_holds_the_objects(world: World, given: str,
                                               pattern: str) -> None:
    r = run("publish", world.dir, "-", "--as", "tanaka", "--classification", "Hi",
            input=given, code=2)
    one_line_error(r, pattern)


@pytest.mark.parametrize(("args", "pattern"), [
    (["--classification", "Bogus"], "JPN has no level 'Bogus'"),
    (["--classification", "Hi", "--rel", "JPN,USA"], "USA is not a party"),
    (["--classification", "Hi", "--caveat", "NOPE"], "NOPE"),
    (["--classification", "Hi", "--collection", "no-such-collection"], "no-such-collection"),
])
def test_publish_refused_marking(world: World, args: list[str], pattern: str) -> None:
    r = run("publish", world.dir, SAMPLE, "--as", "tanaka", *args, code=2)
    one_line_error(r, pattern)


def test_publish_as_unknown_person(world: World) -> None:
    r = run("publish", world.dir, SAMPLE, "--as", "nobody", "--classification", "Hi", code=2)
    one_line_error(r, "no person named 'nobody'")


# -- get -----------------------------------------------------------------------------------

def shown(result: Result) -> tuple[str, dict[str, Any], str]:
    lines = result.stdout.splitlines()
    return lines[0], json.loads("\n".join(lines[1:-1])), lines[-1]


def test_get_banner_in_the_readers_words(world: World) -> None:
    report = next(i for i in world.maritime if i.startswith("report--"))
    top, obj, bottom = shown(run("get", world.dir, report, "--as", "tanaka"))
    assert top == bottom == "極秘 // MARITIME // REL TO JPN, NZL"
    assert obj["id"] == report
    top, obj_nz, bottom = shown(run("get", world.dir, report, "--as", "aroha"))
    assert top == bottom == "SECRET // MARITIME // REL TO JPN, NZL"
    assert obj_nz == obj


def test_get_other_levels(world: World) -> None:
    top, _, _ = shown(run("get", world.dir, world.jpn_only, "--as", "kenji"))
    assert top == "秘 // REL TO JPN"
    top, _, _ = shown(run("get", world.dir, world.eyes_only, "--as", "tanaka"))
    assert top.startswith("秘 // JPNEO")


@pytest.mark.parametrize(("who", "which"), [
    ("kenji", "maritime"),     # not in MARITIME
    ("sato", "maritime"),      # 秘 does not dominate 極秘
    ("aroha", "jpn_only"),     # NZL not in REL TO JPN
    ("aroha", "eyes_only"),    # JPNEO
    ("kenji", "eyes_only"),    # no JPNEO
])
def test_get_what_one_may_not_see(world: World, who: str, which: str) -> None:
    oid = world.maritime[-1] if which == "maritime" else getattr(world, which)
    r = run("get", world.dir, oid, "--as", who, code=2)
    one_line_error(r, f"^error: no object {re.escape(oid)} visible to {who}$")


def test_get_unknown_id_looks_the_same(world: World) -> None:
    r = run("get", world.dir, "indicator--00000000-0000-4000-8000-000000000000", "--as",
            "tanaka", code=2)
    one_line_error(r, "no object indicator--0+-0000-4000-8000-0+ visible to tanaka")


def test_get_all_versions(world: World) -> None:
    oid = indicator("v")["id"]
    v1 = indicator("Versioned", oid=oid)
    v2 = indicator("Versioned", oid=oid, modified="2026-11-02T00:00:00.000Z")
    run("publish", world.dir, "-", "--as", "tanaka", "--classification", "Hi",
        input=bundle(v1, v2))
    r = run("get", world.dir, oid, "--as", "tanaka")
    assert json.loads("\n".join(r.stdout.splitlines()[1:-1]))["modified"] == v2["modified"]
    out = run("get", world.dir, oid, "--as", "tanaka", "--all-versions").stdout
    assert out.count('"modified": ') == 2
    assert out.index(v1["modified"]) < out.index(v2["modified"])


def test_get_and_the_console_show_the_latest_of_more_than_a_thousand_versions(
        world: World) -> None:
    """`intelpact get` and the console's object page show the latest version the person
    may see (the last of Node.versions). Node.versions asked each collection for one page
    of 1,000 versions and ignored `more`, so an object with more than 1,000 versions (a
    vessel that moved 1,000 times) was shown at its 1,000th version, for ever, as if
    nothing came after it."""
    oid = indicator("vessel")["id"]
    versions = [indicator("Vessel", oid=oid, modified=f"2026-11-{2 + n // 1440:02d}T"
                          f"{(n // 60) % 24:02d}:{n % 60:02d}:00.000Z") for n in range(1003)]
    run("publish", world.dir, "-", "--as", "tanaka", "--classification", "Hi",
        input=bundle(*versions))
    _, obj, _ = shown(run("get", world.dir, oid, "--as", "tanaka"))
    assert obj["modified"] == versions[-1]["modified"]
    out = run("get", world.dir, oid, "--as", "tanaka", "--all-versions").stdout
    assert out.count('"modified": ') == 1003


def test_get_prints_text_as_it_is(world: World) -> None:
    """No rich markup or emoji codes: what was published is what is shown."""
    odd = indicator("Odd [bold]text[/] :warning: [/x]")
    run("publish", world.dir, "-", "--as", "tanaka", "--classification", "Hi",
        input=bundle(odd))
    _, obj, _ = shown(run("get", world.dir, odd["id"], "--as", "tanaka"))
    assert obj["name"] == odd["name"]
    out = run("search", world.dir, "[bold]", "--as", "tanaka").stdout
    assert "Odd [bold]text[/] :warning: [/x]" in out


def test_get_prints_no_raw_terminal_controls(world: World) -> None:
    """`intelpact search` escapes control and format characters (cli._safe: "no terminal
    tricks"), but `intelpact get` printed the object as json.dumps(ensure_ascii=False)
    gives it, which escapes only U+0000-U+001F: a publisher's (or a partner's) name with
    a C1 control (U+009B is CSI: an 8-bit escape sequence to terminals that honour C1)
    or a bidi override (U+202E, which reorders the rest of the line, the banner's words
    included) reached the reader's terminal raw. JSON can escape them and stay the
    same JSON (one beyond U+FFFF as its surrogate pair)."""
    odd = indicator("ship \u009b2J\u009b31m \u202eSECRET\u202c ok\u2028\U000e0001")
    run("publish", world.dir, "-", "--as", "tanaka", "--classification", "Hi",
        input=bundle(odd))
    result = run("get", world.dir, odd["id"], "--as", "tanaka")
    assert not [f"U+{ord(c):04X}" for c in result.stdout
                if c in "\u009b\u202e\u202c\u2028\U000e0001"]
    assert "\\udb40\\udc01" in result.stdout  # U+E0001, a format character
    assert shown(result)[1]["name"] == odd["name"]
    # and `search` (cli._safe), which printed U+2028, a line separator, raw
    found = run("search", world.dir, "ship", "--as", "tanaka")
    assert odd["id"][:20] in found.stdout and "\\u2028" in found.stdout
    assert not [f"U+{ord(c):04X}" for c in found.stdout
                if c in "\u009b\u202e\u202c\u2028\U000e0001"]


def test_partner_words_print_no_raw_terminal_controls(tmp_path: Path) -> None:
    """`peer add` and `peer list` printed the URL a partner's card gives, and
    `disseminations` the id and reason of what a partner sent and was refused, as they
    came: an escape sequence in them reached the operator's terminal (OSC 52 writes the
    clipboard, CSI 2J clears the screen, U+202E reorders the line)."""
    nzl, jpn = tmp_path / "nzl", tmp_path / "jpn"
    for d, party in ((nzl, "NZL"), (jpn, "JPN")):
        run("init", d, "--party", party, "--agreement", JN)
    evil = "evil\x1b]52;c;cHduZWQ=\x07\x1b[2J\u202e.example"
    node = Node.open(nzl)  # a partner signs what it likes in its card
    card = make_card(dataclasses.replace(node.identity, url=f"https://{evil}:8402"))
    good = make_card(node.identity)
    node.close()
    (tmp_path / "card.json").write_text(json.dumps(card))
    (tmp_path / "good.json").write_text(json.dumps(good))
    refused = run("peer", "add", jpn, tmp_path / "card.json", code=2)  # no https address
    assert "evil" in refused.stderr
    assert not [f"U+{ord(c):04X}" for c in refused.stderr if c in "\x1b\x07\u202e"]
    run("peer", "add", jpn, tmp_path / "good.json")
    with sqlite3.connect(jpn / "node.db") as c:  # pinned before cards' URLs were checked
        c.execute("UPDATE peers SET url = ?", (f"https://{evil}:8402",))
    node = Node.open(jpn)
    node.store.add_refusals("NZL", [(f"indicator--{evil}", f"refused: {evil}")],
                            "2026-12-02T00:00:00Z")
    node.close()
    for args in (("peer", "list", jpn), ("disseminations", jpn)):
        printed = run(*args).stdout
        assert "evil" in printed, (args, printed)
        assert not [f"U+{ord(c):04X}" for c in printed if c in "\x1b\x07\u202e"], args


# -- search --------------------------------------------------------------------------------

def matches(result: Result) -> set[str]:
    return set(re.findall(r"[a-z-]+--[0-9a-f-]{36}", result.stdout))


def test_search_matches_only_what_one_may_see(world: World) -> None:
    tanaka = run("search", world.dir, "fictional", "--as", "tanaka")
    found = matches(tanaka)
    assert found and found <= set(world.maritime)
    assert "極秘 // MARITIME // REL TO JPN, NZL" in tanaka.stdout
    assert f"{len(found)} match(es) visible to tanaka" in tanaka.stdout
    aroha = run("search", world.dir, "FICTIONAL", "--as", "aroha")  # case-insensitive
    assert matches(aroha) == found
    assert "SECRET // MARITIME // REL TO JPN, NZL" in aroha.stdout and "極秘" not in aroha.stdout
    for who in ("kenji", "sato"):
        r = run("search", world.dir, "fictional", "--as", who)
        assert matches(r) == set() and f"0 match(es) visible to {who}" in r.stdout


def test_search_by_clearance_rel_and_caveat(world: World) -> None:
    assert matches(run("search", world.dir, "harbour crane", "--as", "kenji")) == \
        {world.jpn_only}
    assert matches(run("search", world.dir, "harbour crane", "--as", "aroha")) == set()
    assert matches(run("search", world.dir, "lighthouse", "--as", "tanaka")) == \
        {world.eyes_only}
    assert matches(run("search", world.dir, "lighthouse", "--as", "kenji")) == set()


def test_search_limit(world: World) -> None:
    r = run("search", world.dir, "fictional", "--as", "tanaka", "--limit", "1")
    assert len(matches(r)) == 1 and "1 match(es)" in r.stdout
    assert "--limit" in run("search", world.dir, "x", "--as", "tanaka", "--limit", "0",
                            code=2).stderr


def test_search_audits_as_read_only_what_it_shows(tmp_path: Path) -> None:
    """A `read` event says "a person was served objects" (docs/audit.md), and is what a
    security officer and a partner (partner audit, compromise reports) are shown of who
    read an object. `intelpact search` walked every object the person may see through
    Node.find (each page of 1,000 audited as read, via "search") and printed the few that
    match: a search that matched one object recorded that the person read all of them."""
    d = tmp_path / "jpn-node"
    run("init", d, "--party", "jpn", "--agreement", JN)
    run("user", "add", d, "pub", "--party", "JPN", "--clearance", "Hi", "--role", "publisher")
    wanted, other = indicator("alpha lighthouse"), indicator("bravo freighter")
    run("publish", d, "-", "--as", "pub", "--classification", "Hi", input=bundle(wanted, other))
    assert "1 match(es)" in run("search", d, "LIGHTHOUSE", "--as", "pub").stdout
    node = Node.open(d)
    try:
        events = [json.loads(e.body) for e in node.audit.find(AuditFilter(kinds=("read",)))]
    finally:
        node.close()
    assert [oid for body in events if body.get("via") == "search"
            for oid, *_ in body.get("objects", [])] == [wanted["id"]]


def test_search_as_unknown_person(world: World) -> None:
    one_line_error(run("search", world.dir, "x", "--as", "nobody", code=2), "no person named")


# -- export --------------------------------------------------------------------------------

def exported(world: World, who: str, tmp_path: Path | None = None) -> set[str]:
    if tmp_path is None:
        data = json.loads(run("export", world.dir, "--as", who).stdout)
    else:
        out = tmp_path / f"{who}.json"
        r = run("export", world.dir, "--as", who, "-o", out)
        assert re.fullmatch(rf"Wrote \d+ objects to {re.escape(str(out))}\n"
                            r"the bundle as a whole: .+\n", r.stderr)
        data = json.loads(out.read_text(encoding="utf-8"))
    assert data["type"] == "bundle" and data["id"].startswith("bundle--")
    return {o["id"] for o in data["objects"] if o["type"] != "marking-definition"}


def test_export_contains_only_visible_objects(world: World, tmp_path: Path) -> None:
    aroha = exported(world, "aroha", tmp_path)
    assert set(world.maritime) <= aroha
    assert world.jpn_only not in aroha and world.eyes_only not in aroha
    kenji = exported(world, "kenji")
    assert world.jpn_only in kenji
    assert not kenji & set(world.maritime) and world.eyes_only not in kenji
    tanaka = exported(world, "tanaka")
    assert {*world.maritime, world.jpn_only, world.eyes_only} <= tanaka
    sato = exported(world, "sato")  # 秘: the 秘 // REL TO JPN object, nothing 極秘
    assert world.jpn_only in sato and not sato & set(world.maritime)


def test_an_export_says_the_classification_of_the_whole(world: World,
                                                        tmp_path: Path) -> None:
    """Each object in the bundle carries its markings, but the file as a whole must be
    marked too: the banner of all it holds, in the reader's words, joined (the highest
    level, the caveats and communities of each, the partners every object is released
    to)."""
    r = run("export", world.dir, "--as", "tanaka", "-o", tmp_path / "t.json")
    assert r.stderr.splitlines()[1] == \
        "the bundle as a whole: 極秘 // JPNEO // MARITIME // REL TO JPN"
    r = run("export", world.dir, "--as", "aroha")
    wrote, whole = r.stderr.splitlines()
    assert wrote == f"Wrote {len(json.loads(r.stdout)['objects'])} objects to standard output"
    assert whole == "the bundle as a whole: SECRET // MARITIME // REL TO JPN, NZL"


def test_export_bundle_passes_the_node_view(world: World) -> None:
    """Every exported object is exactly what `get` shows that person."""
    data = json.loads(run("export", world.dir, "--as", "aroha").stdout)
    some = next(o for o in data["objects"] if o["id"] in world.maritime)
    _, obj, _ = shown(run("get", world.dir, some["id"], "--as", "aroha"))
    assert obj == some


def test_export_errors(world: World, tmp_path: Path) -> None:
    r = run("export", world.dir, "--as", "aroha", "-o", tmp_path / "no" / "such" / "x.json",
            code=2)
    one_line_error(r, "x.json: No such file or directory")
    one_line_error(run("export", world.dir, "--as", "nobody", code=2), "no person named")


def test_an_export_is_not_readable_by_every_user_of_the_machine(world: World,
                                                                 tmp_path: Path) -> None:
    """`intelpact export --as aroha -o FILE` writes what aroha may read, classified, to
    FILE. The node keeps its own copy where only its user can read it (the node directory
    is 0700, its keys 0600), but the export was written with Path.write_text under the
    process's umask: 0644 with the usual 022, so any local account read the bundle, and
    an existing file or a symlink planted at that path was followed and overwritten.
    Now it is made 0600, and a path where anything is already is refused."""
    assert set(world.maritime) <= exported(world, "aroha", tmp_path)  # aroha.json
    assert (tmp_path / "aroha.json").stat().st_mode & 0o777 == 0o600
    planted = tmp_path / "planted.txt"
    planted.write_text("kept\n")
    (tmp_path / "link.json").symlink_to(planted)
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere")
    for there in ("aroha.json", "link.json", "dangling.json"):  # a file, a link, a link to none
        path = tmp_path / there
        r = run("export", world.dir, "--as", "aroha", "-o", path, code=2)
        one_line_error(r, f"^error: {re.escape(str(path))} already exists",
                       hint="choose a new path")
    assert planted.read_text() == "kept\n" and not (tmp_path / "nowhere").exists()
    # an export refused once its file is made (no reading role) leaves no file behind
    run("user", "add", world.dir, "exporter", "--party", "JPN", "--clearance", "秘",
        "--role", "operator")
    run("export", world.dir, "--as", "exporter", "-o", tmp_path / "refused.json", code=2)
    assert not (tmp_path / "refused.json").exists()


def test_cli_reads_need_a_reading_role(world: World) -> None:
    """docs/node.md: "An operator alone reads no intelligence" (TAXII and the console answer
    403). `intelpact get/search/export --as` an operator-only person must refuse too;
    before, `export --as ops` handed over every object ops's clearance covers."""
    run("user", "add", world.dir, "ops", "--party", "JPN", "--clearance", "極秘",
        "--caveat", "JPNEO", "--community", "MARITIME", "--role", "operator")
    for args in (["get", world.dir, world.maritime[0]], ["search", world.dir, "a"],
                 ["export", world.dir]):
        r = run(*args, "--as", "ops", code=2)
        one_line_error(r, "^error: ops may not read intelligence: reading needs the analyst, "
                       "publisher or security-officer role$", hint="--role analyst")
        assert r.stdout == "", r.stdout[:300]


@pytest.mark.parametrize("args", [
    ["audit", "show", "DIR"],  # rich's console (_Out)
    ["audit", "show", "DIR", "--json"],  # click.echo
    ["export", "DIR", "--as", "tanaka"],
], ids=["rich", "echo", "export"])
def test_a_reader_gone_ends_the_output_quietly(world: World, args: list[str]) -> None:
    """Output into a pipe whose reader has gone (`| head`) stops quietly with the status a
    shell gives a process SIGPIPE stopped, as cat does: no "error: Broken pipe"."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "intelpact",
                               *(str(world.dir) if a == "DIR" else a for a in args)],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=60,
                              check=False)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


# -- serve ---------------------------------------------------------------------------------

def test_python_m_intelpact_is_the_same_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "intelpact", "user", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: intelpact user ")
    bad = subprocess.run([sys.executable, "-m", "intelpact", "no-such-command"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "No such command" in bad.stderr


def test_only_the_ais_command_imports_the_ais_reader() -> None:
    """pyais takes longer to import than the rest of the command line: every other
    command (and ``serve``) starts without it."""
    probe = ("import sys; from intelpact.interfaces import cli, server; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyais' "
             "or m.startswith('intelpact.maritime.n')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_serve_help() -> None:
    out = run("serve", "--help").stdout
    assert "Serve the node until interrupted" in out and "federation" in out
    assert "--host TEXT" in out and "--port INTEGER RANGE" in out


def test_serve_with_a_missing_certificate(world: World, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    (copy / "tls" / "key.pem").unlink()
    r = run("serve", copy, "--port", "1", code=2)
    one_line_error(r, "key.pem: missing", hint="server.tls_key")


@pytest.mark.parametrize(("name", "content", "said", "hint"), [
    ("keys/audit-pseudonyms.key", None, r"audit-pseudonyms.key: missing, but the audit log "
     r"holds [\d,]+ events that name people by pseudonyms", "restore the file"),
    ("keys/audit-pseudonyms.key", b"", r"audit-pseudonyms.key: not a secret of this node",
     "restore the file"),
    ("keys/cursors.key", b"\xff\xfe", r"cursors.key: not a secret of this node",
     "remove the file: a new secret is made"),
    ("tls/cert.pem", b"junk", r"cert.pem: not a PEM certificate", "BEGIN CERTIFICATE"),
], ids=["pseudonyms missing", "pseudonyms empty", "cursors not ASCII", "certificate junk"])
def test_a_node_file_lost_or_damaged_is_one_clear_error(
        world: World, tmp_path: Path, name: str, content: bytes | None, said: str,
        hint: str) -> None:
    """Before, a missing pseudonym secret was made again (everyone's pseudonyms changed,
    here and at partners), an empty one was used as it was (guessable pseudonyms), and
    the others stopped every command with a decoding error naming no file."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    if content is None:
        (copy / name).unlink()
    else:
        (copy / name).write_bytes(content)
    one_line_error(run("user", "list", copy, code=2), said, hint=hint)
    assert content is None or (copy / name).read_bytes() == content  # left as it was


def test_a_lost_signing_key_says_to_restore_it_and_makes_none(world: World,
                                                              tmp_path: Path) -> None:
    """keys/signing.pem deleted: every command said "signing key file not found" and to
    run `intelpact init` (which refuses a node directory). The key is the node's
    identity, pinned by its partners: the error says so and to restore it from the
    backup, and no key is made in its place."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    key = copy / "keys" / "signing.pem"
    key.unlink()
    for args in (("serve", copy, "--port", "1"), ("user", "list", copy)):
        r = run(*args, code=2)
        one_line_error(r, rf"^error: {re.escape(str(key))}: missing\b", r"identity",
                       r"partners pin", hint="restore the file from this node's backup")
        assert "docs/deployment.md, 'Backups and recovery'" in r.stderr
        assert "intelpact init" not in r.stderr
        assert not key.exists()


def test_a_database_that_cannot_be_opened(world: World, tmp_path: Path) -> None:
    """`database` naming a file in a directory that does not exist, or a directory: every
    command stopped with sqlite3's "unable to open database file" and a traceback."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    toml = copy / "node.toml"
    for value in ("no-such-dir/node.db", "keys"):
        toml.write_text(re.sub(r'(?m)^database = .*$', f'database = "{value}"',
                               toml.read_text()))
        one_line_error(run("user", "list", copy, code=2),
                       rf"^error: {re.escape(str(copy / value))}: cannot open the database: "
                       "unable to open database file$", hint="check database in node.toml")


def test_serve_with_a_key_that_is_not_the_certificate_s(world: World, tmp_path: Path
                                                        ) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    for key in (b"junk", (world.dir / "keys" / "signing.pem").read_bytes()):
        (copy / "tls" / "key.pem").write_bytes(key)
        r = run("serve", copy, "--port", "1", code=2)
        one_line_error(r, r"key.pem: not the PEM private key of \S+cert.pem",
                       hint="restore both files")



@contextmanager
def _taken_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port on ``host`` something else listens on, while in the block: a serve given
    it stops there, after what it says before it listens."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as other:
        other.bind((host, 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_host_edited_to_one_the_certificate_does_not_name_is_refused(
        world: World, tmp_path: Path) -> None:
    """server.host edited in node.toml between restarts, to a host the certificate `init`
    made does not name: `serve` started as before (here it stopped only at the address
    taken), and `card` gave partners a URL of that host, where their TLS refuses the
    certificate (it names the hosts they may reach it by). Both now say so before
    anything starts; a host it names (localhost) serves."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    toml = copy / "node.toml"
    toml.write_text(re.sub(r'(?m)^host = .*$', 'host = "127.0.0.2"', toml.read_text()))
    with _taken_port("127.0.0.2") as port:  # so that a serve that goes on stops at once
        for args in (("serve", copy, "--port", port), ("card", copy)):
            one_line_error(run(*args, code=2), r"server\.host: 127\.0\.0\.2 is not a host the "
                           rf"certificate {re.escape(str(copy / 'tls' / 'cert.pem'))} names "
                           r"\(127\.0\.0\.1, localhost\): partners.* would refuse",
                           hint="make a certificate for the new host")
    toml.write_text(re.sub(r'(?m)^host = .*$', 'host = "localhost"', toml.read_text()))
    card = json.loads(run("card", copy).stdout)
    assert "localhost" in json.dumps(card)


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])  # noqa: S104
def test_a_node_listening_everywhere_without_a_public_host(world: World, tmp_path: Path,
                                                          wildcard: str) -> None:
    """server.host edited to 0.0.0.0 (listen on every interface) without a public host:
    `card` gave partners https://0.0.0.0:8402 (with a certificate init made for it) or
    refused with "not a host the certificate names" (one made for 127.0.0.1), neither
    saying what to set. `card` now refuses, naming server.public_host; `serve` serves (the
    TAXII API may be all the node is for) and warns of it at start. With a public host
    the certificate does not name, both refuse, naming server.public_host."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    toml = copy / "node.toml"
    toml.write_text(re.sub(r'(?m)^host = .*$', f'host = "{wildcard}"', toml.read_text()))
    one_line_error(run("card", copy, code=2), r"server\.host .* listens on every interface",
                   r"no partner reaches", hint="server.public_host")
    try:
        with _taken_port(wildcard) as port:  # serve stops there, after its warnings
            r = run("serve", copy, "--port", port, code=2)
    except OSError:
        pytest.skip(f"no {wildcard} here")
    assert "WARNING" in r.stderr and "server.public_host" in r.stderr, r.stderr
    assert "listens on every interface" in r.stderr, r.stderr
    toml.write_text(toml.read_text().replace(f'host = "{wildcard}"\n',
                                             f'host = "{wildcard}"\npublic_host = '
                                             '"node.example.org"\n'))
    with _taken_port(wildcard) as port:
        for args in (("serve", copy, "--port", port), ("card", copy)):
            one_line_error(run(*args, code=2), r"server\.public_host: node\.example\.org is "
                           r"not a host the certificate .* names \(127\.0\.0\.1, localhost\)",
                           hint="make a certificate for the new host")
    toml.write_text(toml.read_text().replace('"node.example.org"', '"localhost"'))
    card = json.loads(run("card", copy).stdout)
    assert card["url"].startswith("https://localhost:")


def test_serve_warns_of_a_partner_pinned_at_a_wildcard_address(world: World,
                                                               tmp_path: Path) -> None:
    """A partner pinned from a card an older intelpact made while it listened on every
    interface (https://0.0.0.0:8402; `peer add` now refuses such a card): the courier
    sent its objects to 0.0.0.0, this machine, and failed at every round with a TLS
    error that did not say why. `serve` warns of it at start, naming the partner."""
    copy, nzl = tmp_path / "copy", tmp_path / "nzl"
    shutil.copytree(world.dir, copy)
    run("init", nzl, "--party", "NZL", "--agreement", JN)
    (tmp_path / "nzl.json").write_text(run("card", nzl).stdout)
    run("peer", "add", copy, tmp_path / "nzl.json")
    with _taken_port() as port:
        assert "wildcard" not in run("serve", copy, "--port", port, code=2).stderr
        for url in ("https://0.0.0.0:8402", "https://[::]:8402"):
            with sqlite3.connect(copy / "node.db") as c:  # pinned before cards were checked
                c.execute("UPDATE peers SET url = ?", (url,))
            r = run("serve", copy, "--port", port, code=2)
            assert "WARNING" in r.stderr and f"NZL is pinned at {url}" in r.stderr, r.stderr
            assert "ask NZL for its current card" in r.stderr, r.stderr


def test_serve_on_a_port_another_process_listens_on(world: World) -> None:
    """Before, uvicorn said it as each listener started: SystemExit in a task, and a
    traceback of the event loop's."""
    with _taken_port() as port:
        for workers in ("1", "2"):
            r = run("serve", world.dir, "--port", port, "--workers", workers, code=2)
            one_line_error(r, rf"^error: cannot listen on 127\.0\.0\.1:{port}: Address "
                              "already in use$", hint="this node served already?")


def test_serve_on_the_federation_port(world: World, tmp_path: Path) -> None:
    """`serve --port` the node's federation port: each address was probed alone and was
    free, then the second listener failed to bind as it started, with a traceback."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    toml = copy / "node.toml"
    toml.write_text(re.sub(r"(?m)^federation_port = \d+$", f"federation_port = {port}",
                           toml.read_text()))
    for workers in ("1", "2"):
        r = run("serve", copy, "--port", port, "--workers", workers, code=2)
        one_line_error(r, rf"^error: cannot listen on 127\.0\.0\.1:{port}: the TAXII API "
                          "and the federation listener would share the port$",
                       hint="give them different ports")


def test_serve_warns_of_plain_http_on_an_address_other_hosts_reach(world: World,
                                                                   tmp_path: Path) -> None:
    """`tls = false` is for loopback or behind a proxy that terminates TLS: served on
    another address it sent passwords in clear, and `serve` said nothing."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    toml = copy / "node.toml"
    toml.write_text(toml.read_text().replace("tls = true", "tls = false"))
    with _taken_port("0.0.0.0") as port:  # noqa: S104 - serve stops there, after its warning
        r = run("serve", copy, "--host", "0.0.0.0", "--port", port, code=2)  # noqa: S104
        assert "WARNING" in r.stderr and "plain HTTP on 0.0.0.0" in r.stderr, r.stderr
        r = run("serve", copy, "--port", port, code=2)  # 127.0.0.1: no warning
        assert "plain HTTP" not in r.stderr, r.stderr
    for host, warned in (("127.0.0.1", False), ("::1", False), ("localhost", False),
                         ("10.0.0.5", True), ("node.example", True)):
        assert (plain_http_warning(False, host) is not None) is warned, host
        assert plain_http_warning(True, host) is None


def test_serve_warns_of_a_certificate_that_ends_soon_or_has_ended(world: World,
                                                                   tmp_path: Path) -> None:
    """The certificate init makes lasts 825 days; partners pin it and refuse it once it has
    ended, and nothing said so until exchanges stopped. `serve` warns from 30 days
    before, at each start."""
    cert = world.dir / "tls" / "cert.pem"
    ends = load_certificate(cert).not_valid_after_utc
    assert certificate_warning(cert, ends - dt.timedelta(days=31)) is None
    soon = certificate_warning(cert, ends - dt.timedelta(days=10, hours=1))
    assert soon is not None and "in 10 day(s)" in soon and "intelpact card" in soon
    ended = certificate_warning(cert, ends + dt.timedelta(seconds=1))
    assert ended is not None and f"ended on {ends:%Y-%m-%d}" in ended
    copy = tmp_path / "copy"  # a node whose certificate ends in 10 days
    shutil.copytree(world.dir, copy)
    make_self_signed(copy / "tls" / "c.pem", copy / "tls" / "k.pem", common_name="x", days=10)
    for name in ("cert.pem", "key.pem"):
        (copy / "tls" / name).unlink()
    (copy / "tls" / "c.pem").rename(copy / "tls" / "cert.pem")
    (copy / "tls" / "k.pem").rename(copy / "tls" / "key.pem")
    with _taken_port() as port:  # serve stops there, after its warnings
        r = run("serve", copy, "--port", port, code=2)
    assert "WARNING" in r.stderr and "ends on" in r.stderr and "in 9 day(s)" in r.stderr, \
        r.stderr


def test_serve_warns_of_a_node_other_users_may_read(world: World, tmp_path: Path) -> None:
    """The node directory holds its objects, audit log and keys. init makes it 0700, but a
    copy or a restore may not keep that, and node.db was once made with the umask:
    nothing said so."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    with _taken_port() as port:  # serve stops there, after its warnings
        r = run("serve", copy, "--port", port, code=2)
        assert "other users" not in r.stderr, r.stderr
        copy.chmod(0o755)
        (copy / "node.db").chmod(0o644)
        r = run("serve", copy, "--port", port, code=2)
    assert "WARNING" in r.stderr and "other users of this machine may read" in r.stderr
    assert f"{copy} (mode 755)" in r.stderr and f"{copy / 'node.db'} (mode 644)" in r.stderr


def test_serve_warns_of_a_key_other_users_may_read(world: World, tmp_path: Path) -> None:
    """Each private key and secret the node reads (the signing key, the TLS key, the audit
    pseudonym, event-MAC and cursor keys) is made 0600, but a restore, or a key put in
    place by hand, may not keep that: serve took one others could read silently. It warns
    now, naming each file and the chmod fix, as for the node directory."""
    copy = tmp_path / "copy"
    shutil.copytree(world.dir, copy)
    secrets = [copy / "keys" / "signing.pem", copy / "tls" / "key.pem",
               *(copy / "keys" / n for n in ("audit-pseudonyms.key", "audit-events.key",
                                             "cursors.key"))]
    assert all(s.is_file() for s in secrets)
    with _taken_port() as port:  # serve stops there, after its warnings
        r = run("serve", copy, "--port", port, code=2)
        assert "other users" not in r.stderr, r.stderr
        for secret, mode in zip(secrets, (0o640, 0o604, 0o644, 0o660, 0o600), strict=True):
            secret.chmod(mode)
        r = run("serve", copy, "--port", port, code=2)
    warned = r.stderr.replace("\n", " ")
    assert "WARNING" in warned and "a private key or secret of the node" in warned, warned
    for secret, mode in zip(secrets[:4], ("640", "604", "644", "660"), strict=True):
        assert f"{secret} (mode {mode})" in warned, warned
    assert str(secrets[4]) not in warned and "chmod go= PATH" in warned
    assert f"{copy} (mode" not in warned  # the directory itself is the node user's


# -- --help everywhere ---------------------------------------------------------------------

def all_commands(group: click.Group = main, path: tuple[str, ...] = ()
                 ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, group
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


COMMANDS = list(all_commands())


def test_the_command_surface() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert names >= {"", "init", "user", "user add", "user list", "user revoke", "token",
                     "token issue", "token revoke", "serve", "publish", "get", "search",
                     "export"}


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) or "main"
                                                        for p, _ in COMMANDS])
def test_help_is_complete(path: tuple[str, ...], cmd: click.Command) -> None:
    for flag in ("--help", "-h"):
        out = run(*path, flag).stdout
        assert out.startswith("Usage: "), out
    assert cmd.help and cmd.help.strip(), f"{path} has no help text"
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help and param.help.strip(), f"{path}: {param.opts} has no help"
            assert param.opts[0] in out, (path, param.opts)
        else:
            assert (param.metavar or param.name or "").upper() in out, (path, param.name)
    if isinstance(cmd, click.Group):
        for name in cmd.commands:
            assert name in out


def test_version() -> None:
    assert re.fullmatch(r".* \d+\.\d+\.\d+\S*\n", run("--version").stdout)


# -- the installed console script ----------------------------------------------------------

def script(*args: object, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(INTELPACT), *map(str, args)], input=input, capture_output=True,
                          timeout=60, env=env, check=False)


@pytest.mark.parametrize("case", ["non-empty", "unknown-person", "markup-name"])
def test_installed_script_errors_are_one_line(world: World, case: str) -> None:
    if case == "non-empty":
        p = script("init", world.dir, "--party", "JPN", "--agreement", JN)
        expect = ("error: ", "exists and is not empty", "hint: give a new directory")
    elif case == "unknown-person":
        p = script("get", world.dir, world.maritime[0], "--as", "nobody")
        expect = ("error: no person named 'nobody'", "", "hint: list people with")
    else:  # once a crash inside rich: "[/x]" read as a closing markup tag
        p = script("user", "add", world.dir, "[/x]", "--party", "JPN", "--clearance", "Hi")
        expect = ("error: invalid name '[/x]'", "", "hint: use 1-64 characters")
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert "Traceback" not in err and p.stdout == b""
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(expect[0]) and expect[1] in lines[0]
    assert lines[1].startswith(expect[2])


def test_installed_script_works(world: World) -> None:
    assert INTELPACT.is_file()
    p = script("search", world.dir, "fictional", "--as", "aroha")
    assert p.returncode == 0, p.stderr
    assert "SECRET // MARITIME // REL TO JPN, NZL" in p.stdout.decode()


def test_a_store_gone_mid_command_is_one_line_and_a_hint(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """StoreUnavailable (PostgreSQL stopped while a command ran) is not an IntelpactError
    on purpose (store/base.py); the command line still says it in one line, no traceback."""
    from intelpact.interfaces.cli import friendly
    from intelpact.store.base import StoreUnavailable

    @friendly
    def command() -> None:
        raise StoreUnavailable("the PostgreSQL store at 127.0.0.1:5432 went away")

    with pytest.raises(SystemExit) as exit_:
        command()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the PostgreSQL store at 127.0.0.1:5432 went away\n"), err
    assert "hint: check that the database server runs" in err and "Traceback" not in err


def test_a_command_does_not_migrate_a_database_an_older_serve_may_be_running_on(
        tmp_path: Path) -> None:
    """Regression: every command opening a node applied the migrations its database
    lacked, so a newer intelpact's command (a `user add` run after upgrading, before the
    old `serve` was stopped) changed the schema under the serve still running on it,
    which expects the one it knows. Only `migrate` and `serve` migrate now; another
    command refuses an older schema, saying to stop the node and migrate it, and changes
    nothing. Then `migrate`, the operator's step, applies what is due."""
    from helpers import before_newest, make_node, migrations_applied

    node = make_node(tmp_path / "jpn")
    d = node.config.dir
    node.close()
    newest = before_newest(d)  # the release before's
    older = migrations_applied(d)
    add = ["user", "add", str(d), "late", "--party", "JPN", "--clearance", "秘"]
    refused = CliRunner().invoke(main, add)
    said = " ".join(refused.output.split())
    assert refused.exit_code != 0, said
    assert f"database schema version {older[-1]} is older than this intelpact" in said
    assert "only `intelpact migrate` and `serve` migrate it" in said, said
    assert "stop the node if an older intelpact still serves it" in said, said
    assert "intelpact migrate DIR" in said, said
    assert migrations_applied(d) == older  # not migrated
    assert not any(r[0] == "late" for r in _people_rows(d))
    # the operator's step: `migrate` (as serve does first), which serves nothing
    done = CliRunner().invoke(main, ["migrate", str(d)])
    assert done.exit_code == 0, done.output
    assert f"schema version {newest}" in done.output
    assert migrations_applied(d) == [*older, newest]
    added = CliRunner().invoke(main, add)
    assert added.exit_code == 0, added.output
    assert any(r[0] == "late" for r in _people_rows(d))


def test_migrate_refuses_while_a_serve_runs_on_the_database(tmp_path: Path) -> None:
    """Regression: `migrate` (or a newer `serve`, which migrates first) started while a
    serve still ran on the node's database changed the schema under it. A serve holds
    the serve lock shared for its life; a migration needs it exclusive, without
    waiting: refused while the serve runs, changing nothing; applied once it stops."""
    from helpers import before_newest, migrations_applied, test_database
    from served import Pair

    url = test_database()
    with Pair(tmp_path, databases={"JPN": url} if url else None, pool=False) as pair:
        d = pair.dirs["JPN"]
        pair.start("JPN")  # its database current: serve migrates nothing, holds the lock
        newest = before_newest(d)  # the release before's: migrating it is due
        older = migrations_applied(d)
        refused = CliRunner().invoke(main, ["migrate", str(d)])
        said = " ".join(refused.output.split())
        assert refused.exit_code != 0, said
        assert "a serve of this node is running on its database: stop it before migrating" \
            in said, said
        assert migrations_applied(d) == older  # nothing changed
        assert pair.procs["JPN"].poll() is None  # still serving
        pair.stop("JPN")
    done = CliRunner().invoke(main, ["migrate", str(d)])
    assert done.exit_code == 0, done.output
    assert migrations_applied(d) == [*older, newest]


def test_two_newer_serves_starting_at_once_on_an_older_database_both_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two newer serves started at once on a database of the release before: the first
    migrates, holding the write lock and the serve lock exclusive; the second waits for
    the write lock, then reads the schema again, finds nothing due, and takes the serve
    lock shared, as the first does once migrated. Neither is refused as if a serve were
    running (it would be: "a serve of this node is running on its database"). The first
    is paused inside its migration (the real code, at its first statement) until the
    second waits for the write lock behind it."""
    import threading

    import intelpact.store.postgres as postgres_store
    import intelpact.store.sqlite as sqlite_store

    from helpers import before_newest, make_node, migrations_applied, node_sql

    node = make_node(tmp_path / "jpn")
    d = node.config.dir
    node.close()
    newest = before_newest(d)
    older = migrations_applied(d)
    migrating, resume, entered = threading.Event(), threading.Event(), threading.Event()
    real_statements = sqlite_store._statements  # noqa: SLF001
    real_writes = {cls: cls._write for cls in (sqlite_store.SQLiteStore,  # noqa: SLF001
                                               postgres_store.PostgresStore)}

    def paused_statements(sql: str) -> list[str]:
        if threading.current_thread().name == "first" and not migrating.is_set():
            migrating.set()  # the first holds the write lock, the serve lock exclusive
            resume.wait(60)
        return real_statements(sql)

    def noted_write(cls: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "second":
                entered.set()
            return real_writes[cls](self, *args, **kwargs)
        return write

    monkeypatch.setattr(sqlite_store, "_statements", paused_statements)
    monkeypatch.setattr(postgres_store, "_statements", paused_statements)
    for cls in real_writes:
        monkeypatch.setattr(cls, "_write", noted_write(cls))
    opened: dict[str, Node | BaseException] = {}

    def start(name: str) -> None:
        try:
            opened[name] = Node.open(d, migrate=True, serving=True)
        except BaseException as exc:  # noqa: BLE001 - the verdict, below
            opened[name] = exc

    threads = {n: threading.Thread(target=start, args=(n,), name=n)
               for n in ("first", "second")}
    threads["first"].start()
    assert migrating.wait(60)
    threads["second"].start()
    assert entered.wait(60)  # and then it waits for the write lock the first holds:
    def second_waits() -> bool:
        if node.config.database.startswith("postgresql://"):
            return bool(node_sql(d, "SELECT count(*) FROM pg_locks WHERE locktype = "
                                 "'advisory' AND NOT granted")[0][0])
        inode = f":{(d / 'node.db.writers').stat().st_ino} "  # a waiter on its flock
        return any("->" in line and inode in line
                   for line in Path("/proc/locks").read_text().splitlines())

    deadline = time.monotonic() + 30
    while not second_waits() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second_waits()
    resume.set()
    for thread in threads.values():
        thread.join(120)
    monkeypatch.undo()
    try:
        assert all(isinstance(n, Node) for n in opened.values()), opened
        assert migrations_applied(d) == [*older, newest]
    finally:
        for n in opened.values():
            if isinstance(n, Node):
                n.close()


def _people_rows(node_dir: Path) -> list[tuple[Any, ...]]:
    from helpers import node_sql

    return node_sql(node_dir, "SELECT name FROM people")
