"""node.toml: loading (every error names the file and field, with a fix), writing, init."""

from __future__ import annotations

import dataclasses
import re
import shutil
import stat
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intelpact.config import (
    CONFIG_FILE,
    CONSOLE_PATHS,
    DEFAULT_MAX_CONTENT,
    ConfigError,
    NodeConfig,
    _toml_string,
    create_node_dir,
    load_config,
    write_config,
)
from intelpact.errors import IntelpactError

from helpers import AGREEMENTS

JN = AGREEMENTS / "jpn-nzl.toml"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real node directory (keys, TLS certificate); tests edit copies of it."""
    d = tmp_path_factory.mktemp("config") / "jpn"
    create_node_dir(d, party="JPN", agreement_file=JN)
    return d


@pytest.fixture()
def node_dir(template: Path, tmp_path: Path) -> Path:
    d = tmp_path / "jpn"
    shutil.copytree(template, d)
    return d


def set_field(d: Path, key: str, toml_value: str | None) -> None:
    """Replace ``key = ...`` in node.toml (None: delete the line)."""
    path = d / CONFIG_FILE
    text, n = re.subn(rf"(?m)^{key} = .*\n", "" if toml_value is None
                      else f"{key} = {toml_value}\n", path.read_text(encoding="utf-8"))
    assert n == 1, key
    path.write_text(text, encoding="utf-8")


def add_line(d: Path, section: str, line: str) -> None:
    path = d / CONFIG_FILE
    text = path.read_text(encoding="utf-8").replace(f"[{section}]\n", f"[{section}]\n{line}\n")
    path.write_text(text, encoding="utf-8")


def fails(d: Path, *patterns: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(d)
    err = info.value
    for pattern in patterns:
        assert re.search(pattern, err.message), (pattern, err.message)
    assert err.hint, f"no hint for: {err.message}"
    assert "\n" not in err.message
    return err


# -- loading: what init wrote ----------------------------------------------------------------

def test_loads_what_init_wrote(template: Path) -> None:
    cfg = load_config(template)
    assert cfg == NodeConfig(
        dir=template, party="JPN", name="jpn-node", title="intelpact JPN node",
        agreement_path=template / "agreement.toml", agreement_hash=cfg.agreement_hash,
        database="node.db", signing_key=template / "keys" / "signing.pem",
        host="127.0.0.1", port=8401, tls=True, tls_cert=template / "tls" / "cert.pem",
        tls_key=template / "tls" / "key.pem", api_root="intel",
        max_content_length=DEFAULT_MAX_CONTENT)
    assert cfg.agreement_hash.startswith("sha256:")


def test_defaults_for_every_optional_field(node_dir: Path) -> None:
    pinned = load_config(node_dir).agreement_hash
    (node_dir / CONFIG_FILE).write_text(
        f'[node]\nparty = "JPN"\nagreement_hash = "{pinned}"\n', encoding="utf-8")
    cfg = load_config(node_dir)
    assert (cfg.name, cfg.title, cfg.database) == ("jpn-node", "intelpact JPN node", "node.db")
    assert cfg.agreement_path == node_dir / "agreement.toml"
    assert cfg.signing_key == node_dir / "keys" / "signing.pem"
    assert (cfg.host, cfg.port, cfg.tls, cfg.api_root) == ("127.0.0.1", 8401, True, "intel")
    assert cfg.tls_cert == node_dir / "tls" / "cert.pem"
    assert cfg.max_content_length == 10 * 1024 * 1024


def test_tls_off_and_absolute_paths(node_dir: Path, tmp_path: Path) -> None:
    set_field(node_dir, "tls", "false")
    outside = tmp_path / "elsewhere.pem"
    set_field(node_dir, "signing_key", _toml_string(str(outside)))
    cfg = load_config(node_dir)
    assert cfg.tls is False
    assert cfg.signing_key == outside


# -- loading: errors ---------------------------------------------------------------------------

def test_missing_directory(tmp_path: Path) -> None:
    err = fails(tmp_path / "nope", "no such node directory")
    assert "intelpact init" in (err.hint or "")


def test_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    fails(tmp_path / "file", "no such node directory")


def test_missing_node_toml(tmp_path: Path) -> None:
    err = fails(tmp_path, re.escape(str(tmp_path / CONFIG_FILE)), "missing")
    assert "not a node directory" in (err.hint or "")


def test_unreadable_node_toml(node_dir: Path) -> None:
    (node_dir / CONFIG_FILE).write_bytes(b"[node]\nparty = \"\xff\"\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(node_dir)


@pytest.mark.parametrize("text", ["[node\n", "party = \n", "[node]\nparty = 'a\n",
                                  "[node]\n[node]\n"])
def test_invalid_toml(node_dir: Path, text: str) -> None:
    (node_dir / CONFIG_FILE).write_text(text, encoding="utf-8")
    fails(node_dir, re.escape(CONFIG_FILE), r"\(syntax\): not valid TOML")


def test_unknown_section(node_dir: Path) -> None:
    with (node_dir / CONFIG_FILE).open("a", encoding="utf-8") as fh:
        fh.write("\n[tls]\ncert = 'x'\n")
    err = fails(node_dir, r"node\.toml: tls: unknown section")
    assert "[node] and [server]" in (err.hint or "")


def test_section_that_is_not_a_table(node_dir: Path) -> None:
    (node_dir / CONFIG_FILE).write_text('node = "JPN"\n', encoding="utf-8")
    fails(node_dir, r"node: expected a table")


@pytest.mark.parametrize(("section", "line", "field"), [
    ("node", 'colour = "red"', "node.colour"),
    ("server", "workers = 4", "server.workers"),
    ("server", 'party = "JPN"', "server.party"),   # a [node] field in the wrong section
])
def test_unknown_field(node_dir: Path, section: str, line: str, field: str) -> None:
    add_line(node_dir, section, line)
    err = fails(node_dir, re.escape(field) + ": unknown field")
    assert "remove it" in (err.hint or "")


@pytest.mark.parametrize("value", ["0", "65536", "-1", '"8401"', "true", "84.01"])
def test_bad_port(node_dir: Path, value: str) -> None:
    set_field(node_dir, "port", value)
    err = fails(node_dir, r"server\.port: expected 1-65535, found ")
    assert err.hint == "write port = 8401"


@pytest.mark.parametrize("value", ['"yes"', "1", '"true"'])
def test_bad_tls(node_dir: Path, value: str) -> None:
    set_field(node_dir, "tls", value)
    fails(node_dir, r"server\.tls: expected true or false")


@pytest.mark.parametrize("value", ['"jpn"', '"JAPAN"', '"JP"', '""', "392", '"J1N"'])
def test_bad_party(node_dir: Path, value: str) -> None:
    set_field(node_dir, "party", value)
    fails(node_dir, r"node\.party: ")


def test_party_missing(node_dir: Path) -> None:
    set_field(node_dir, "party", None)
    fails(node_dir, r"node\.party: expected a non-empty string, found None")


def test_party_not_in_agreement(node_dir: Path) -> None:
    set_field(node_dir, "party", '"AUS"')
    err = fails(node_dir, r"node\.party: AUS is not a party to jpn-nzl-isa")
    assert err.hint == "use one of JPN, NZL"


@pytest.mark.parametrize("value", ['"Intel"', '"taxii2"', '"a/b"', '""', '"-x"', '"x y"',
                                   '"' + "a" * 64 + '"', "1", '"intél"'])
def test_bad_api_root(node_dir: Path, value: str) -> None:
    set_field(node_dir, "api_root", value)
    fails(node_dir, r"server\.api_root: ")


@pytest.mark.parametrize("value", CONSOLE_PATHS)
def test_api_root_that_is_a_console_path(node_dir: Path, value: str) -> None:
    """The console is served at the root beside the API root, which takes every path
    under its name: with api_root = "login" the console's log-in page redirected to
    the API root, and nobody could log in; with "static" it had no stylesheet."""
    set_field(node_dir, "api_root", f'"{value}"')
    fails(node_dir, rf"server\.api_root: '{value}' is a path of the console")


def test_console_paths_are_every_console_path(node_dir: Path) -> None:
    from intelpact.interfaces.console.app import Console
    from intelpact.services.node import Node

    node = Node.open(node_dir)
    try:
        firsts = {getattr(route, "path", "").split("/")[1] for route in Console(node).app.routes}
    finally:
        node.close()
    assert firsts - {""} == set(CONSOLE_PATHS)


def test_good_api_root(node_dir: Path) -> None:
    set_field(node_dir, "api_root", '"jpn-2"')
    assert load_config(node_dir).api_root == "jpn-2"


@pytest.mark.parametrize("value", ["1023", "1073741825", "-5", '"10MB"', "true", "1e6"])
def test_bad_max_content_length(node_dir: Path, value: str) -> None:
    set_field(node_dir, "max_content_length", value)
    err = fails(node_dir, r"server\.max_content_length: expected 1024 to 1073741824 bytes")
    assert "max_content_length = " in (err.hint or "")


@pytest.mark.parametrize("value", ["1024", "1073741824"])
def test_max_content_length_bounds(node_dir: Path, value: str) -> None:
    set_field(node_dir, "max_content_length", value)
    assert load_config(node_dir).max_content_length == int(value)


@pytest.mark.parametrize("key", ["header_timeout", "body_idle_timeout", "body_timeout"])
@pytest.mark.parametrize("value", ["0", "0.5", "3601", "-1", '"10s"', "true", "nan"])
def test_bad_timeouts(node_dir: Path, key: str, value: str) -> None:
    set_field(node_dir, key, value)
    err = fails(node_dir, rf"server\.{key}: expected 1 to 3600 seconds")
    assert f"{key} = " in (err.hint or "")


@pytest.mark.parametrize("key", ["header_timeout", "body_idle_timeout", "body_timeout"])
def test_timeouts_take_whole_or_fractional_seconds(node_dir: Path, key: str) -> None:
    for value, expected in (("1", 1.0), ("2.5", 2.5), ("3600", 3600.0)):
        set_field(node_dir, key, value)
        loaded = getattr(load_config(node_dir), key)
        assert loaded == expected and isinstance(loaded, float)


@pytest.mark.parametrize("value", ["0", "100001", "-1", "2.5", '"10"', "true"])
def test_bad_max_connections(node_dir: Path, value: str) -> None:
    set_field(node_dir, "max_connections", value)
    err = fails(node_dir, r"server\.max_connections: expected 1 to 100000")
    assert "max_connections = 1000" in (err.hint or "")


def test_max_connections(node_dir: Path) -> None:
    assert load_config(node_dir).max_connections == 1000
    set_field(node_dir, "max_connections", "50")
    assert load_config(node_dir).max_connections == 50


@pytest.mark.parametrize("value", ["0", "0.001", "100001", "-1", '"50"', "true", "nan", "inf"])
def test_bad_partner_rate(node_dir: Path, value: str) -> None:
    set_field(node_dir, "partner_rate", value)
    err = fails(node_dir, r"server\.partner_rate: expected 0\.01 to 100000 requests a second")
    assert "partner_rate = 200" in (err.hint or "")


@pytest.mark.parametrize("value", ["0", "1000001", "-1", "2.5", '"500"', "true"])
def test_bad_partner_burst(node_dir: Path, value: str) -> None:
    set_field(node_dir, "partner_burst", value)
    err = fails(node_dir, r"server\.partner_burst: expected 1 to 1000000 requests")
    assert "partner_burst = 500" in (err.hint or "")


def test_trusted_proxies(node_dir: Path) -> None:
    """[server] trusted_proxies: none by default (X-Forwarded-For ignored from everyone);
    addresses and CIDR networks, IPv4 and IPv6, written canonically and back as read."""
    assert load_config(node_dir).trusted_proxies == ()
    assert "trusted_proxies" not in (node_dir / CONFIG_FILE).read_text(encoding="utf-8")
    add_line(node_dir, "server", 'trusted_proxies = ["10.0.0.5", " 10.1.0.0/24", '
             '"2001:DB8::1", "2001:db8:1::/48", "192.0.2.9/32"]')
    cfg = load_config(node_dir)
    assert cfg.trusted_proxies == ("10.0.0.5", "10.1.0.0/24", "2001:db8::1",
                                   "2001:db8:1::/48", "192.0.2.9")
    write_config(cfg)
    assert load_config(node_dir) == cfg
    write_config(dataclasses.replace(cfg, trusted_proxies=()))
    assert load_config(node_dir).trusted_proxies == ()


@pytest.mark.parametrize(("value", "problem"), [
    ('"10.0.0.5"', "expected a list of IP addresses or networks"),
    ("[5]", "expected an IP address or network, found 5"),
    ('["proxy.example.jp"]', "'proxy.example.jp' is not an IP address or network"),
    ('["*"]', "'\\*' is not an IP address or network"),
    ('["10.0.0.300"]', "is not an IP address or network"),
    ('["10.0.0.5/24"]', "has host bits set: the network is '10.0.0.0/24'"),
    ('["10.0.0.0/33"]', "is not an IP address or network"),
    ('["0.0.0.0/0"]', "'0.0.0.0/0' is a wildcard"),
    ('["10.0.0.5", "::/0"]', "'::/0' is a wildcard"),
    ('["0.0.0.0"]', "is a wildcard")])
def test_bad_trusted_proxies(node_dir: Path, value: str, problem: str) -> None:
    """A proxy list the node cannot read, or one trusting every address, is refused at
    load: uvicorn would take an unparsable entry as a literal host name that never
    matches, and a wildcard lets any client name its own address (no throttle)."""
    add_line(node_dir, "server", f"trusted_proxies = {value}")
    err = fails(node_dir, r"server\.trusted_proxies: .*" + problem)
    assert "trusted_proxies = [" in (err.hint or "")


def test_partner_rate_limit(node_dir: Path) -> None:
    """A partner's requests on the federation listener: 500 at once, then 200 a second,
    unless node.toml says otherwise; written back as read."""
    cfg = load_config(node_dir)
    assert (cfg.partner_burst, cfg.partner_rate) == (500, 200.0)
    set_field(node_dir, "partner_burst", "3")
    set_field(node_dir, "partner_rate", "0.25")
    cfg = load_config(node_dir)
    assert (cfg.partner_burst, cfg.partner_rate) == (3, 0.25)
    set_field(node_dir, "partner_rate", "12345.678")
    write_config(load_config(node_dir))
    assert load_config(node_dir).partner_rate == 12345.678


def test_timeout_defaults(node_dir: Path) -> None:
    cfg = load_config(node_dir)
    assert (cfg.header_timeout, cfg.body_idle_timeout, cfg.body_timeout) == (10.0, 10.0, 120.0)


@pytest.mark.parametrize("key", ["name", "title", "host", "database", "signing_key",
                                 "agreement", "agreement_hash", "tls_cert"])
def test_empty_or_wrong_type_strings(node_dir: Path, key: str) -> None:
    set_field(node_dir, key, '""')
    section = "server" if key in ("host", "tls_cert") else "node"
    fails(node_dir, rf"{section}\.{key}: expected a non-empty string, found ''")
    set_field(node_dir, key, "42")
    fails(node_dir, rf"{section}\.{key}: expected a non-empty string, found 42")


def test_agreement_edited_after_init(node_dir: Path) -> None:
    agreement = node_dir / "agreement.toml"
    agreement.write_text(agreement.read_text(encoding="utf-8").replace(
        'breach_notice_hours = 24', 'breach_notice_hours = 72'), encoding="utf-8")
    err = fails(node_dir, re.escape(str(node_dir / CONFIG_FILE)), r"node\.agreement_hash: ",
                re.escape(str(agreement)), "not the pinned sha256:")
    assert "agreement changed since init" in (err.hint or "")


def test_agreement_whitespace_and_comments_do_not_change_the_pin(node_dir: Path) -> None:
    agreement = node_dir / "agreement.toml"
    agreement.write_text("# a new comment\n\n" + agreement.read_text(encoding="utf-8"),
                         encoding="utf-8")
    load_config(node_dir)  # the hash is over the parsed content


def test_agreement_missing_or_broken(node_dir: Path) -> None:
    agreement = node_dir / "agreement.toml"
    agreement.write_text("[agreement\n", encoding="utf-8")
    fails(node_dir, re.escape(str(agreement)), "not valid TOML")
    agreement.unlink()
    fails(node_dir, re.escape(str(agreement)), "cannot read")


def test_federation_port_default(node_dir: Path) -> None:
    set_field(node_dir, "federation_port", None)
    set_field(node_dir, "port", "9000")
    cfg = load_config(node_dir)
    assert cfg.federation_port == 9001
    assert cfg.federation_url == "https://127.0.0.1:9001"


@pytest.mark.parametrize(("host", "url"), [
    ("::1", "https://[::1]:8402"), ("fd00::5", "https://[fd00::5]:8402"),
    ("10.0.0.5", "https://10.0.0.5:8402"), ("node.example.org", "https://node.example.org:8402")])
def test_federation_url_of_an_ipv6_host_is_bracketed(node_dir: Path, host: str,
                                                      url: str) -> None:
    """The URL the node card gives partners: it was https://::1:8402 for an IPv6 host,
    which a partner pinned without complaint and its courier could never reach (httpx:
    "Invalid port")."""
    import httpx

    set_field(node_dir, "host", _toml_string(host))
    cfg = load_config(node_dir)
    assert cfg.federation_url == url
    assert (httpx.URL(cfg.federation_url).host, httpx.URL(cfg.federation_url).port) == \
        (host, 8402)


@pytest.mark.parametrize("value", ["0", "65536", "8401", '"8402"', "true"])
def test_bad_federation_port(node_dir: Path, value: str) -> None:
    set_field(node_dir, "federation_port", value)
    fails(node_dir, r"server\.federation_port: expected 1-65535 and not the TAXII port")


@pytest.mark.parametrize("scheme", ["PostgreSQL", "postgresql+psycopg", "postgressql", "mysql",
                                    "sqlite"])
def test_database_url_of_another_scheme(node_dir: Path, scheme: str) -> None:
    """A misspelt postgresql:// URL was taken for a SQLite file's name: a traceback
    ("unable to open database file"), or, had its directories existed, a new empty
    store. The error does not repeat the URL, which may hold a password."""
    set_field(node_dir, "database", f'"{scheme}://ipnode:s3cret@db.internal/ipnode"')
    err = fails(node_dir, rf"node\.database: a {re.escape(scheme)}:// URL is no store")
    assert "s3cret" not in err.message and "s3cret" not in (err.hint or "")
    for url in ("postgresql://ipnode@db.internal/ipnode", "postgres://ipnode@db/ipnode"):
        set_field(node_dir, "database", f'"{url}"')
        assert load_config(node_dir).database == url


@pytest.mark.parametrize("value", ['"https://node.example.org"', '"node.example.org:8401"',
                                   '"node example"', '"[::1]"', '"*.example.org"',
                                   '"node\\tname"', '""'])
def test_bad_host(node_dir: Path, value: str) -> None:
    """host is where serve listens and what the node card gives partners
    (https://<host>:<federation_port>): a URL or a host:port written there was accepted,
    and the card carried https://https://node.example.org:8402 to partners before serve
    failed to listen on it."""
    set_field(node_dir, "host", value)
    fails(node_dir, r"server\.host: ")


@pytest.mark.parametrize("value", ["127.0.0.1", "::1", "0.0.0.0", "localhost",  # noqa: S104
                                   "node.example.go.jp", "Node-1.Example.org."])
def test_good_host(node_dir: Path, value: str) -> None:
    set_field(node_dir, "host", f'"{value}"')
    assert load_config(node_dir).host == value


def test_public_host_is_not_set_by_default(node_dir: Path) -> None:
    """A node.toml without public_host (every node made before it existed) loads as
    before: the card's URL is made of host."""
    assert "public_host" not in (node_dir / CONFIG_FILE).read_text(encoding="utf-8")
    cfg = load_config(node_dir)
    assert cfg.public_host is None and cfg.federation_url == "https://127.0.0.1:8402"


@pytest.mark.parametrize(("value", "url"), [
    ("node.example.go.jp", "https://node.example.go.jp:8402"),
    ("Node-1.Example.org.", "https://Node-1.Example.org.:8402"),
    ("203.0.113.7", "https://203.0.113.7:8402"), ("2001:db8::7", "https://[2001:db8::7]:8402"),
    ("localhost", "https://localhost:8402")])
def test_good_public_host(node_dir: Path, value: str, url: str) -> None:
    """public_host is what the card gives partners; host stays where serve listens."""
    set_field(node_dir, "host", '"0.0.0.0"\npublic_host = ' + _toml_string(value))
    cfg = load_config(node_dir)
    assert (cfg.host, cfg.public_host, cfg.federation_url) == ("0.0.0.0", value, url)  # noqa: S104
    write_config(cfg)  # `agreement pin` rewrites node.toml: the public host stays
    assert load_config(node_dir) == cfg


@pytest.mark.parametrize(("value", "problem"), [
    ('"0.0.0.0"', "every interface"), ('"::"', "every interface"),
    ('"0:0::0"', "every interface"), ('"0"', "every interface"),
    ('"0x0"', "every interface"), ('"127.1"', "not a host name"), ('"10.0.7"', "not a host name"),
    ('""', "non-empty string"), ("5", "non-empty string"), ('"https://node.example.org"', ""),
    ('"node.example.org:8402"', ""), ('"[::1]"', ""), ('"*.example.org"', ""),
    ('"node example"', "")])
def test_bad_public_host(node_dir: Path, value: str, problem: str) -> None:
    """A public host that is itself a wildcard (what 0.0.0.0, ::, and the shorthands
    inet_aton reads as 0.0.0.0 are), empty, or no host name or IP address is refused:
    partners would be given it."""
    add_line(node_dir, "server", f"public_host = {value}")
    err = fails(node_dir, r"server\.public_host: ", re.escape(problem))
    assert "public_host = " in (err.hint or "")


def test_pinned_hash_edited(node_dir: Path) -> None:
    set_field(node_dir, "agreement_hash", '"sha256:' + "0" * 64 + '"')
    fails(node_dir, r"node\.agreement_hash: .* not the pinned sha256:0000")


# -- writing --------------------------------------------------------------------------------------

HOSTILE = [
    'quote " inside', "back\\slash", "\\", '\\"', "'single'", '"""triple"""', "'''",
    "tab\there", "new\nline", "cr\rlf", "nul\x00byte", "esc\x1b[31m", "del\x7f",
    "\u0085next line", "\u2028line sep", "日本語 テキスト", "Māori: Aotearoa", "emoji 🛰️",
    "\U0010ffff", "trailing backslash \\", "# not a comment", "[section]", "x = 1",
    "${HOME}", "unicode escape \\u0041",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_toml_string_round_trips(value: str) -> None:
    assert tomllib.loads(f"v = {_toml_string(value)}\n")["v"] == value


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_toml_string_round_trips_any_text(value: str) -> None:
    assert tomllib.loads(f"v = {_toml_string(value)}\n")["v"] == value


def test_toml_string_refuses_lone_surrogates() -> None:
    with pytest.raises(ConfigError, match="not valid Unicode"):
        _toml_string("a\udcffb")


@pytest.mark.parametrize(("seconds", "rate"), [
    (1234.5678, 0.1 + 0.2), (1.0000001, 123.45678901234568), (3599.999999, 200.0),
    (10.0, 0.01)])
def test_write_config_keeps_every_number(node_dir: Path, seconds: float, rate: float) -> None:
    """write_config wrote the timeouts with 6 significant digits and partner_rate with 15:
    `agreement pin`, which rewrites node.toml, turned header_timeout = 1234.5678 into
    1234.57, changing an operator's setting behind their back."""
    cfg = dataclasses.replace(load_config(node_dir), header_timeout=seconds,
                              body_idle_timeout=seconds, body_timeout=seconds,
                              partner_rate=rate)
    write_config(cfg)
    assert load_config(node_dir) == cfg


def test_write_config_round_trip_with_hostile_strings(node_dir: Path) -> None:
    cfg = load_config(node_dir)
    for value in HOSTILE:
        changed = dataclasses.replace(cfg, name=value, title=value + " title",
                                      database=f"db {value}.sqlite", port=1,
                                      max_content_length=1024, api_root="a-1")
        write_config(changed)
        assert load_config(node_dir) == changed, repr(value)


def test_write_config_without_tls(node_dir: Path) -> None:
    cfg = dataclasses.replace(load_config(node_dir), tls=False)
    write_config(cfg)
    assert "tls = false" in (node_dir / CONFIG_FILE).read_text(encoding="utf-8")
    assert load_config(node_dir) == cfg


def test_write_config_keeps_outside_paths_absolute(node_dir: Path, tmp_path: Path) -> None:
    cfg = dataclasses.replace(load_config(node_dir), signing_key=tmp_path / "k.pem")
    write_config(cfg)
    assert f'signing_key = "{tmp_path / "k.pem"}"' in (node_dir / CONFIG_FILE).read_text()
    assert load_config(node_dir).signing_key == tmp_path / "k.pem"


# -- create_node_dir -------------------------------------------------------------------------------

def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_permissions(template: Path) -> None:
    assert mode(template) == 0o700
    assert mode(template / "keys") == 0o700
    assert mode(template / "keys" / "signing.pem") == 0o600
    assert mode(template / "tls") == 0o700
    assert mode(template / "tls" / "key.pem") == 0o600
    assert mode(template / "tls" / "cert.pem") == 0o644  # public


def test_layout(template: Path) -> None:
    files = sorted(str(p.relative_to(template)) for p in template.rglob("*") if p.is_file())
    assert files == ["agreement.toml", "keys/signing.pem", "node.toml", "tls/cert.pem",
                     "tls/key.pem"]  # node.db is made when the node is first opened
    assert (template / "agreement.toml").read_bytes() == JN.read_bytes()


def test_permissions_even_with_a_loose_umask(tmp_path: Path) -> None:
    import os
    old = os.umask(0)
    try:
        cfg = create_node_dir(tmp_path / "loose", party="NZL", agreement_file=JN, tls=False)
    finally:
        os.umask(old)
    assert mode(cfg.dir) == 0o700
    assert mode(cfg.signing_key) == 0o600
    assert cfg.tls is False
    for sub in ("keys", "tls"):
        if (cfg.dir / sub).exists():
            assert mode(cfg.dir / sub) == 0o700
    if (cfg.dir / "tls" / "key.pem").exists():  # made for federation even without TLS
        assert mode(cfg.dir / "tls" / "key.pem") == 0o600


def test_existing_empty_dir_is_fine(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir(mode=0o755)
    cfg = create_node_dir(d, party="JPN", agreement_file=JN, tls=False, port=9000)
    assert mode(d) == 0o700 and cfg.port == 9000


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    d = tmp_path / "busy"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty") as info:
        create_node_dir(d, party="JPN", agreement_file=JN)
    assert "never overwrites" in (info.value.hint or "")
    assert [p.name for p in d.iterdir()] == ["notes.txt"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="exists"):
        create_node_dir(tmp_path / "afile", party="JPN", agreement_file=JN)


def test_refuses_an_existing_node(template: Path) -> None:
    before = (template / "keys" / "signing.pem").read_bytes()
    with pytest.raises(ConfigError, match="not empty"):
        create_node_dir(template, party="JPN", agreement_file=JN)
    assert (template / "keys" / "signing.pem").read_bytes() == before


def test_refuses_unknown_party_and_bad_agreement(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AUS is not a party to agreement jpn-nzl-isa") as i:
        create_node_dir(tmp_path / "a", party="AUS", agreement_file=JN)
    assert i.value.hint == "use one of JPN, NZL"
    bad = tmp_path / "bad.toml"
    bad.write_text("[agreement]\nid = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(str(bad))) as i:
        create_node_dir(tmp_path / "b", party="JPN", agreement_file=bad)
    assert i.value.hint
    with pytest.raises(ConfigError, match="cannot read"):
        create_node_dir(tmp_path / "c", party="JPN", agreement_file=tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="port 0 is out of range"):
        create_node_dir(tmp_path / "d", party="JPN", agreement_file=JN, port=0)
    assert not any((tmp_path / n).exists() for n in "abcd")


@pytest.mark.parametrize("tls", [True, False])
def test_a_failed_init_leaves_nothing_behind(tmp_path: Path, tls: bool) -> None:
    """A bad host is found only after keys are made: init must clean up, so a retry works."""
    with pytest.raises(IntelpactError, match="''"):  # TlsError, or ConfigError without TLS
        create_node_dir(tmp_path / "new", party="JPN", agreement_file=JN, host="", tls=tls)
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IntelpactError, match="''"):
        create_node_dir(empty, party="JPN", agreement_file=JN, host="", tls=tls)
    assert empty.is_dir() and not any(empty.iterdir())
    create_node_dir(empty, party="JPN", agreement_file=JN, tls=tls)  # the retry works


def test_extra_host_goes_into_the_certificate(tmp_path: Path) -> None:
    from cryptography import x509

    cfg = create_node_dir(tmp_path / "n", party="JPN", agreement_file=JN,
                          host="node.example.org")
    assert cfg.tls_cert is not None
    cert = x509.load_pem_x509_certificate(cfg.tls_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "node.example.org"]
