"""The `intelpact` command. Thin: parse, call the node, print.

Errors are one clear line (and a hint), never a traceback. Long work shows a
progress bar on a terminal.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import re
import signal
import sqlite3
import sys
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..config import CONFIG_FILE
from ..crypto.tls import check_key_pair, check_names_host, wildcard_host
from ..errors import IntelpactError
from ..jsonio import JsonError, parse_json
from ..logs import LOG_LEVEL_ENV, LOG_LEVELS, configure_logging
from ..model import Label, banner, join_all
from ..model.decisions import ROLES
from ..services.node import Node
from ..services.people import Principal
from ..services.publish import MarkingRequest
from ..stix.validate import StixValidationError, bundle_objects
from ..store.base import Query, StoredObject, StoreUnavailable
from ..store.sqlite import damage

F = TypeVar("F", bound=Callable[..., Any])
# No markup, no emoji codes: names, ids and objects come from people and partners; "[/]"
# or ":warning:" in one must print as it is, not crash rich, restyle the terminal or change
# the JSON shown by `get`. Styles are applied with Text.
def _reader_gone() -> NoReturn:
    """Standard output's reader went away (`| head`): stop quietly, with the status a shell
    gives a process that SIGPIPE stopped (as cat does), writing nothing more."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)


class _Out(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        _reader_gone()


out = _Out(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
NODE_DIR = click.argument("node_dir", metavar="DIR", type=click.Path(path_type=Path))


def _unsafe(c: str) -> bool:
    """Whether a terminal may do more with ``c`` than show it: a control, format,
    private-use, unassigned or surrogate character, or a line or paragraph separator."""
    kind = unicodedata.category(c)
    return kind[0] == "C" or kind in ("Zl", "Zp")


def _safe(text: object) -> str:
    """``text`` on one line with what is :func:`_unsafe` escaped (no terminal tricks)."""
    return "".join(f"\\u{ord(c):04x}" if _unsafe(c) else c for c in str(text))


_NOT_PLAIN = re.compile(r"[^\n\x20-\x7e]")  # what _json looks at: printable ASCII is safe


def _json(value: Any, indent: int | None) -> str:
    """``value`` as JSON (indented, or on one line) that a terminal shows as it is
    (:func:`_plain_json`)."""
    return _plain_json(json.dumps(value, ensure_ascii=False, indent=indent))


def _plain_json(text: str) -> str:
    """JSON ``text`` with its control, format, private-use, unassigned and surrogate
    characters and line and paragraph separators escaped as \\uXXXX (a surrogate pair
    beyond U+FFFF), which json.dumps leaves raw but for U+0000-U+001F. The same JSON
    value: outside strings, JSON has no such character but line breaks, kept."""
    def escape(match: re.Match[str]) -> str:
        return json.dumps(match.group())[1:-1] if _unsafe(match.group()) else match.group()
    return _NOT_PLAIN.sub(escape, text)


def _fail(message: object, hint: str | None = None) -> NoReturn:
    err.print(Text.assemble(("error:", "bold red"), " ", _safe(message)))
    if hint:
        err.print(Text("hint: " + _safe(hint)))
    sys.exit(2)


def friendly(fn: F) -> F:
    """Turn intelpact errors into one line plus a hint, exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (IntelpactError, StoreUnavailable) as exc:
            _fail(exc.message, exc.hint)
        except BrokenPipeError:  # click.echo's (rich's: _Out)
            _reader_gone()
        except sqlite3.DatabaseError as exc:
            if (problem := damage(exc)) is None:
                raise
            _fail(f"the node's database cannot be read: {problem}",
                  "it was damaged, or written to by something other than intelpact: "
                  "'intelpact audit verify DIR' says what of the audit log is intact; "
                  "restore the node from a backup (docs/deployment.md, \"Backups and "
                  "recovery\")")
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}")
        except KeyError as exc:
            _fail(exc.args[0] if exc.args else exc)
        except ValueError as exc:  # UnicodeError too: str() says what could not be decoded
            _fail(exc)

    return wrapper  # type: ignore[return-value]


def _url(scheme: str, host: str, port: int) -> str:
    try:
        bracket = ipaddress.ip_address(host).version == 6
    except ValueError:
        bracket = False
    return f"{scheme}://[{host}]:{port}/taxii2/" if bracket else f"{scheme}://{host}:{port}/taxii2/"


def _csv(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(v.strip().upper() for v in value.split(",") if v.strip())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="intelpact")
def main() -> None:
    """intelpact: a national node for sharing classified intelligence under an
    information security agreement (STIX 2.1 over TAXII 2.1).

    Every command takes the node directory DIR made by `intelpact init`."""


@main.command()
@NODE_DIR
@click.option("--party", required=True, help="This node's party (ISO 3166-1 alpha-3, e.g. JPN).")
@click.option("--agreement", "agreement_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The agreement TOML file; it is copied into DIR and pinned by hash.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on (0.0.0.0 or :: for every interface, with "
              "--public-host).")
@click.option("--public-host", default=None, metavar="HOST",
              help="The name or address partners and clients reach this node by, when "
              "--host is not it: the node card gives it and the TLS certificate names it "
              "(server.public_host). Required with a --host of every interface.")
@click.option("--port", default=8401, show_default=True, type=click.IntRange(1, 65535),
              help="Port to serve on.")
@click.option("--tls/--no-tls", default=True, show_default=True,
              help="Serve HTTPS with the self-signed certificate made here.")
@click.option("--database", default=None, metavar="URL",
              help="The store: a postgresql:// URL of an empty database, which the node "
              "is made in (default: node.db, a SQLite file in DIR).")
@friendly
def init(node_dir: Path, party: str, agreement_file: Path, host: str,
         public_host: str | None, port: int, tls: bool, database: str | None) -> None:
    """Make a node directory: config, pinned agreement, keys, TLS certificate, database."""
    node = Node.create(node_dir, party=party.upper(), agreement_file=agreement_file, host=host,
                       port=port, tls=tls, database=database, public_host=public_host)
    out.print(f"Initialised the {node.party} node in {node_dir}")
    out.print(f"  agreement  {node.agreement.id} ({node.agreement.content_hash})")
    if node.agreement.illustrative:
        out.print(Text.assemble("             ", ("illustrative sample agreement", "yellow")))
    out.print(f"  collection {node.default_collection().collection_id}")
    listening = f" (listening on {host})" if public_host and public_host != host else ""
    out.print(f"  serves     {_url('https' if tls else 'http', public_host or host, port)}"
              f"{listening}")
    out.print(f"Next: intelpact user add {node_dir} NAME --party {node.party} --clearance LEVEL")
    node.close()


@main.group()
def user() -> None:
    """Add, list and revoke the people of a node."""


@user.command("add")
@NODE_DIR
@click.argument("name")
@click.option("--party", required=True, help="The person's nationality (e.g. JPN).")
@click.option("--clearance", required=True,
              help="Clearance in the person's national words or romanisation (極秘, Gokuhi).")
@click.option("--caveat", "caveats", multiple=True, help="A caveat held (repeatable).")
@click.option("--community", "communities", multiple=True,
              help="A community of interest (repeatable).")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES),
              help="A role (repeatable; default analyst).")
@click.option("--password-stdin", is_flag=True,
              help="Read a password (12 characters or more) from the first line of standard "
              "input, for HTTP Basic. Without it the person can use only API tokens.")
@friendly
def user_add(node_dir: Path, name: str, party: str, clearance: str, caveats: tuple[str, ...],
             communities: tuple[str, ...], roles: tuple[str, ...], password_stdin: bool) -> None:
    """Add a person with their clearance, caveats, communities and roles."""
    password = None
    if password_stdin:
        try:
            password = sys.stdin.buffer.readline().decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise IntelpactError("the password on standard input is not UTF-8 text",
                                 hint="give the password as UTF-8 text") from None
    node = Node.open(node_dir, migrate=False)
    record = node.people.add(name, party=party.upper(), clearance=clearance,
                             caveats=[c.upper() for c in caveats],
                             communities=[c.upper() for c in communities],
                             roles=roles or ("analyst",), password=password)
    out.print(f"Added {record.name}: {record.party}, cleared {record.clearance}, "
              f"roles {', '.join(record.roles)}")
    node.close()


@user.command("list")
@NODE_DIR
@friendly
def user_list(node_dir: Path) -> None:
    """List the people of a node."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    table = Table("name", "party", "clearance", "caveats", "communities", "roles", "status")
    for p in node.store.people():
        table.add_row(*(Text(_safe(v)) for v in (
            p.name, p.party, p.clearance, ", ".join(p.caveats), ", ".join(p.communities),
            ", ".join(p.roles), f"revoked {p.revoked}" if p.revoked else "active")))
    out.print(table)
    node.close()


@user.command("revoke")
@NODE_DIR
@click.argument("name")
@friendly
def user_revoke(node_dir: Path, name: str) -> None:
    """Revoke a person and all their tokens. Names are never reused."""
    node = Node.open(node_dir, migrate=False)
    node.people.revoke(name)
    out.print(f"Revoked {name}")
    node.close()


@main.group()
def token() -> None:
    """Issue and revoke API tokens (HTTP Bearer)."""


@token.command("issue")
@NODE_DIR
@click.argument("name")
@click.option("--label", default="", help="A note to remember the token by.")
@friendly
def token_issue(node_dir: Path, name: str, label: str) -> None:
    """Print a new bearer token for NAME. It is shown once; only its digest is kept."""
    node = Node.open(node_dir, migrate=False)
    click.echo(node.people.issue_token(name, label))
    node.close()


@token.command("revoke")
@NODE_DIR
@click.argument("name")
@click.option("--token", "value", default=None, help="Revoke only this token (default: all).")
@friendly
def token_revoke(node_dir: Path, name: str, value: str | None) -> None:
    """Revoke NAME's tokens (all, or one)."""
    node = Node.open(node_dir, migrate=False)
    count = node.people.revoke_tokens(name, value)
    out.print(f"Revoked {count} token(s) of {name}")
    node.close()


@main.command()
@NODE_DIR
@click.option("--host", default=None, help="Override the configured address of the TAXII "
              "API (the federation listener stays on server.host, the node card's).")
@click.option("--port", default=None, type=click.IntRange(1, 65535),
              help="Override the configured port of the TAXII API.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="TAXII worker processes (several are meant for a PostgreSQL store).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              default="info", show_default=True, envvar=LOG_LEVEL_ENV, show_envvar=True,
              help="Log this and above to stderr, each line with its UTC time. At debug, "
                   "every retry of a partner that keeps failing the same way.")
@friendly
def serve(node_dir: Path, host: str | None, port: int | None, workers: int,
          log_level: str) -> None:
    """Serve the node until interrupted: the TAXII 2.1 API for its people, the
    mutual-TLS federation listener for its partners, and the courier that delivers
    releases to them."""
    from .server import (
        HOLDS_KEY,
        cap_malloc_arenas,
        certificate_warning,
        exposed_warning,
        plain_http_warning,
        serve_workers,
        wildcard_peer_warnings,
        wildcard_warning,
    )
    from .server import serve as run

    cap_malloc_arenas()  # before the node's threads start
    configure_logging(log_level.lower())
    # the one command that migrates a database older than this intelpact: the others,
    # which may run beside an older serve still running on it, refuse (docs/node.md)
    # (refused while another serve runs on it, which holds the serve lock as this one
    # then does until it stops)
    node = Node.open(node_dir, migrate=True, serving=True)
    cfg = node.config
    host, port = host or cfg.host, port or cfg.port
    pair: list[Path] = []
    for path, field in ((cfg.tls_cert, "tls_cert"), (cfg.tls_key, "tls_key")):
        if path is None or not path.is_file():
            raise IntelpactError(f"{path}: missing (server.{field} in node.toml)",
                                 hint="restore the file, or point server." + field +
                                 " at your certificate and key")
        pair.append(path)
    check_key_pair(*pair)  # as the listeners will load them, before they start
    if not wildcard_host(cfg.advertised_host):  # else warned of below
        # the card's, which partners reach the federation listener by
        check_names_host(pair[0], cfg.advertised_host, cfg.advertised_field)
    private = [cfg.dir] if "://" in cfg.database else [cfg.dir, cfg.dir / cfg.database]
    keys = cfg.signing_key.parent  # the secrets Node.__init__ reads, and the two keys
    secret = [cfg.signing_key, pair[1], *(keys / name for name in (
        "audit-pseudonyms.key", "audit-events.key", "cursors.key"))]
    if "://" in cfg.database and urllib.parse.urlsplit(cfg.database).password:
        secret.append(cfg.dir / CONFIG_FILE)  # the database's password is in it
    for warning in (plain_http_warning(cfg.tls, host), wildcard_warning(cfg),
                    certificate_warning(pair[0]),
                    exposed_warning(*private), exposed_warning(*secret, holds=HOLDS_KEY),
                    *wildcard_peer_warnings(node.store.peers())):
        if warning:
            logging.getLogger("intelpact.server").warning(warning)
    # where people reach it: the public host, unless --host names another to listen on
    shown = cfg.public_host if cfg.public_host and host == cfg.host else host
    where = f" (listening on {host})" if shown != host else ""
    out.print(f"{node.party} node: {_url('https' if cfg.tls else 'http', shown, port)}{where} "
              f"(agreement {node.agreement.id})")
    partners = ", ".join(p.party for p in node.store.peers()) or "none yet"
    listening = f", listening on {cfg.host}" if cfg.advertised_host != cfg.host else ""
    out.print(f"partners: {cfg.federation_url} (mutual TLS{listening}); pinned: {partners}")
    if workers > 1:
        out.print(f"{workers} TAXII worker processes")
        serve_workers(node, workers, host=host, port=port)
    else:
        run(node, host=host, port=port)


@main.command()
@NODE_DIR
@friendly
def migrate(node_dir: Path) -> None:
    """Bring the node's database to this intelpact's schema, and stop: what `serve` does
    first, without serving (no listener, no delivery to partners), for a node stopped
    for its upgrade, or a copy restored from a backup. Other commands never migrate (one
    may run beside an older serve still running on the database): after an upgrade, run
    this or `serve` once. Stop any older serve of the node first."""
    node = Node.open(node_dir, migrate=True)
    try:
        out.print(f"{node_dir}: database at schema version {node.store.schema_version}, "
                  "this intelpact's")
    finally:
        node.close()


def _load_objects(path: Path) -> list[Any]:
    try:
        data = parse_json(sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes())
    except OSError as exc:
        raise IntelpactError(f"{path}: cannot read: {exc.strerror}") from None
    except JsonError as exc:
        raise IntelpactError(f"{path}: {exc.message}",
                             hint="give a STIX bundle or TAXII envelope as JSON") from None
    if isinstance(data, dict) and ("objects" in data or data.get("type") == "bundle"):
        try:  # the container checked as TAXII checks it: its members are the publish's
            objects = bundle_objects(data)
        except StixValidationError as exc:
            raise IntelpactError(f"{path}: {exc.message}", hint="give a STIX bundle or "
                                 "TAXII envelope as JSON") from None
    elif isinstance(data, dict) and "type" in data:
        objects = [data]
    elif isinstance(data, list):
        objects = data
    else:
        raise IntelpactError(f"{path}: not a STIX bundle, envelope, object or list of objects")
    if not objects:
        raise IntelpactError(f"{path}: holds no objects: nothing to publish")
    return objects


@contextmanager
def _progress(what: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (silent otherwise; ``total`` None: not known);
    yields advance(n)."""
    if not err.is_terminal:
        yield lambda n: None
        return
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


@main.command()
@NODE_DIR
@click.argument("file", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--as", "as_name", required=True, help="Publish as this person.")
@click.option("--classification", required=True,
              help="Level in the publisher's national words, romanisation or the shared name.")
@click.option("--rel", default="", help="REL TO parties, comma-separated (e.g. JPN,NZL).")
@click.option("--caveat", "caveats", multiple=True, help="A caveat (repeatable).")
@click.option("--community", "communities", multiple=True,
              help="A community of interest (repeatable).")
@click.option("--collection", default=None, help="Collection id (default: the node's own).")
@friendly
def publish(node_dir: Path, file: Path, as_name: str, classification: str, rel: str,
            caveats: tuple[str, ...], communities: tuple[str, ...],
            collection: str | None) -> None:
    """Publish a STIX bundle from FILE ('-' for stdin) under a national marking.

    FILE may hold a bundle, a TAXII envelope, one object or a list of objects. Prints
    how many objects were accepted and rejected, and why each was rejected; exits
    with status 1 when none was accepted."""
    objects = _load_objects(file)
    node = Node.open(node_dir, migrate=False)
    principal = as_publisher(node, as_name)
    cid = collection or node.default_collection().collection_id
    marking = MarkingRequest(classification, _csv(rel), tuple(c.upper() for c in caveats),
                             tuple(c.upper() for c in communities))
    with _progress("Publishing", len(objects) + 1) as advance:
        record = node.publisher.publish(principal.person, cid, objects, marking=marking,
                                        progress=advance)
    status = record.body
    # Count what FILE held: the status also lists the marking-definition the node made
    # for --classification (refused when the person may not publish at that level: each
    # object citing it says so)
    given = {o.get("id") for o in objects if isinstance(o, dict)}
    accepted = sum(1 for s in status["successes"] if s["id"] in given)
    failures = [f for f in status["failures"] if f["id"] in given or f["id"] == "?"]
    rejected = len(failures)
    out.print(f"Published as {_safe(principal.name)} ({principal.person.party}): "
              f"{accepted} accepted, {rejected} rejected (status {status['id']})")
    for failure in failures[:20]:
        out.print(f"  rejected {_safe(failure['id'])}: {_safe(failure['message'])}")
    if rejected > 20:
        out.print(f"  … and {rejected - 20} more")
    node.close()
    if accepted == 0 and rejected:
        sys.exit(1)


def as_publisher(node: Node, as_name: str) -> Principal:
    """The person named ``as_name``, refused unless they have the publisher role (as over
    TAXII and on the console): `publish --as` and `ingest ais --as` alike."""
    principal = node.people.as_person(as_name)
    if not principal.has_role("publisher"):  # audited, as over TAXII and on the console
        node.audit.record(node.audit.event("deny", person=principal.person, via="publish",
                                           reason="publishing needs the publisher role"))
        raise IntelpactError(f"{as_name} may not publish: publishing needs the publisher "
                             "role", hint="a security officer gives it (intelpact user add "
                             "… --role publisher), or publish as someone who has it")
    return principal


def banner_line(words: str) -> Text:
    """A banner as printed: reversed on a terminal, plain text otherwise."""
    line = _safe(words)
    return Text(f" {line} ", style="reverse") if out.is_terminal else Text(line)


def _print_object(node: Node, party: str, row: StoredObject, obj: dict[str, Any]) -> None:
    # The stored label, not the body's markings: a reclassification raises or narrows
    # the label and leaves the originator's body as it was (docs/controls.md).
    labels = node.shown_labels(row, obj)
    shown = banner_line(banner(labels.banner, node.agreement, party))
    out.print(shown)
    out.print(_json(obj, indent=2))
    out.print(shown)


@main.command()
@NODE_DIR
@click.argument("object_id", metavar="ID")
@click.option("--as", "as_name", required=True, help="Read as this person.")
@click.option("--all-versions", is_flag=True, help="Show every version, oldest first.")
@friendly
def get(node_dir: Path, object_id: str, as_name: str, all_versions: bool) -> None:
    """Show an object as a person sees it, between banners in their national words.

    The banners are of the label the object is held under, which a reclassification by
    its originator may have raised above the markings its body carries. An object the
    person may not see is reported exactly as one that does not exist. Characters that
    could steer the terminal (control and format characters, line separators) are
    printed escaped as \\uXXXX: the same JSON."""
    node = Node.open(node_dir, migrate=False)
    principal = node.people.as_person(as_name)
    found = node.versions(principal, object_id)
    if not found:
        raise IntelpactError(f"no object {object_id} visible to {as_name}")
    for row, body in found if all_versions else found[-1:]:
        _print_object(node, principal.person.party, row, json.loads(body))
    node.close()


@main.command()
@NODE_DIR
@click.argument("query")
@click.option("--as", "as_name", required=True, help="Search as this person.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Show at most this many matches.")
@friendly
def search(node_dir: Path, query: str, as_name: str, limit: int) -> None:
    """Find objects whose name or description contains QUERY (case-insensitive), newest
    first.

    The node's text search, as the console's: only the matches shown are audited as
    read. Text shorter than three characters is looked for in the newest 10,000 objects
    the person may see only."""
    node = Node.open(node_dir, migrate=False)
    principal = node.people.as_person(as_name)
    table = Table("banner", "type", "id", "name")
    shown = 0
    for collection in node.store.collections():
        if shown >= limit:
            break
        _, visible = node.find(principal, collection.collection_id, Query(
            text=query, newest_first=True, limit=limit - shown), via="search")
        for row, body in visible:
            obj = json.loads(body)
            labels = node.shown_labels(row, obj)
            table.add_row(*(Text(_safe(v)) for v in (
                banner(labels.banner, node.agreement, principal.person.party),
                obj["type"], obj["id"], str(obj.get("name", "")))))
            shown += 1
    out.print(table)
    out.print(f"{shown} match(es) visible to {_safe(as_name)}")
    node.close()


@main.command()
@NODE_DIR
@click.option("--as", "as_name", required=True, help="Export what this person may see.")
@click.option("--output", "-o", type=click.Path(path_type=Path, allow_dash=True), default="-",
              show_default=True, help="Write the bundle here.")
@friendly
def export(node_dir: Path, as_name: str, output: Path) -> None:
    """Write a STIX bundle of the latest version of everything a person may see.

    Each object carries its own markings; the classification of the bundle as a whole
    (every object's banner joined, in the person's words: one line for each agreement)
    is printed on standard error, for marking the file or the medium it goes on. Its
    JSON escapes the characters `get` escapes. A file is made readable by its owner
    alone (0600), and only where nothing is: an existing file, or a symbolic link (even
    to nowhere), is refused, never written over or through."""
    import uuid

    node = Node.open(node_dir, migrate=False)
    principal = node.people.as_person(as_name)
    party = principal.person.party
    by_agreement: dict[str, list[Label]] = {}
    with nullcontext(None) if str(output) == "-" else _new_private(output) as fh:
        objects = []
        for row, obj in _visible(node, principal, "export"):
            label = node.shown_labels(row, obj).banner
            by_agreement.setdefault(label.agreement, []).append(label)
            objects.append(obj)
        bundle = _json({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                        "objects": objects}, indent=1)
        if fh is None:
            click.echo(bundle)
        else:
            fh.write(bundle + "\n")
    err.print(f"Wrote {len(objects)} objects to {'standard output' if fh is None else output}",
              markup=False)
    for labels in by_agreement.values():
        err.print(banner_line(f"the bundle as a whole: "
                              f"{banner(join_all(labels), node.agreement, party)}"))
    node.close()


@contextmanager
def _new_private(path: Path) -> Iterator[TextIO]:
    """A file made at ``path`` for writing, that only this user may read (0600), removed
    if the writing fails. It is made before anything is read into it, where nothing is:
    O_EXCL refuses an existing file and a symbolic link (to anything or nothing) in the
    same step as the creation, so nothing planted there is written over or through."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise IntelpactError(f"{path} already exists: an export never writes over a file",
                             hint="choose a new path with -o, or move that one away first"
                             ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
    except BaseException:
        path.unlink(missing_ok=True)  # ours: O_EXCL made it
        raise


def _visible(node: Node, principal: Any, via: str
             ) -> Iterator[tuple[StoredObject, dict[str, Any]]]:
    for collection in node.store.collections():
        for row, body in node.find_all(principal, collection.collection_id,
                                       Query(limit=1000), via=via):
            yield row, json.loads(body)


from . import (  # noqa: E402,F401
    cli_ais,
    cli_audit,
    cli_compromise,
    cli_consent,
    cli_controls,
    cli_federation,
)
