"""`intelpact ingest ais`: AIS NMEA 0183 into vessels, tracks and alerts (docs/maritime.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from ..errors import IntelpactError
from ..model import Agreement
from ..services.node import Node
from ..services.publish import MarkingRequest
from .cli import NODE_DIR, _csv, _safe, as_publisher, err, friendly, main, out

if TYPE_CHECKING:
    from ..services.ais import IngestSummary

# The AIS reader (pyais) takes longer to import than the rest of the command line
# together: it is imported by this command when it runs, not by every command.


@main.group()
def ingest() -> None:
    """Ingest feeds into a node as one of its people: AIS vessel reports (`ingest ais`)."""


@contextmanager
def _bar(total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar over the input's bytes on a terminal (silent otherwise)."""
    if not err.is_terminal:
        yield lambda n: None
        return
    columns = (TextColumn("Ingesting"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("Ingesting", total=total)
        yield lambda n: bar.advance(task, n)


def _marking(agreement: Agreement, party: str, classification: str | None, rel: str | None,
             caveats: tuple[str, ...], communities: tuple[str, ...]) -> MarkingRequest:
    """The marking asked for; what is not given comes from the agreement's default
    (its lowest covered level, releasable to its parties, community MARITIME)."""
    from ..services.ais import default_marking

    default = default_marking(agreement)
    level = classification or default.classification
    if rel is not None:
        rel_to = _csv(rel)
    elif classification is None:
        rel_to = default.rel_to
    else:
        try:
            rank = agreement.rank_of(party, classification)
        except KeyError:
            rank = agreement.shared_rank(classification)
        rel_to = tuple(p for p in agreement.parties if agreement.rows[rank].cells[p].held)
    chosen = tuple(c.upper() for c in communities) or default.communities
    return MarkingRequest(level, rel_to, tuple(c.upper() for c in caveats), chosen)


@ingest.command("ais")
@NODE_DIR
@click.argument("file", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--as", "as_name", required=True, help="Publish as this person.")
@click.option("--classification", default=None,
              help="Level in the publisher's words or the shared name (default: the "
              "agreement's lowest covered level).")
@click.option("--rel", default=None,
              help="REL TO parties, comma-separated (default: every party of the agreement "
              "that holds the level).")
@click.option("--caveat", "caveats", multiple=True, help="A caveat (repeatable).")
@click.option("--community", "communities", multiple=True,
              help="A community of interest (repeatable; default MARITIME when the "
              "agreement has it).")
@click.option("--window", default=10, show_default=True, type=click.IntRange(1, 1440),
              help="Minutes of one vessel's positions in one track (one sighting).")
@click.option("--rules", "rules_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Alert rules (TOML, docs/maritime.md; default: the rules shipped).")
@click.option("--no-alerts", is_flag=True, help="Run no alert rules.")
@click.option("--collection", default=None, help="Collection id (default: the node's own).")
@friendly
def ingest_ais(node_dir: Path, file: Path, as_name: str, classification: str | None,
               rel: str | None, caveats: tuple[str, ...], communities: tuple[str, ...],
               window: int, rules_file: Path | None, no_alerts: bool,
               collection: str | None) -> None:
    """Ingest AIS NMEA 0183 from FILE ('-' for stdin): vessels, their tracks and alerts.

    Reads !AIVDM/!AIVDO sentences (multi-part messages, NMEA 4.0 tag blocks; comments
    and other lines are skipped and counted), publishes each vessel as an identity, its
    positions in each window as a sighting, and what the alert rules find as notes.
    Bad sentences are counted by reason and never stored. Exits with status 1 when
    nothing was published."""
    from ..maritime.rules import load_rules
    from ..services.ais import AisIngest

    rules = None if no_alerts else load_rules(rules_file)
    node = Node.open(node_dir, migrate=False)
    try:
        principal = as_publisher(node, as_name)
        person = principal.person
        marking = _marking(node.agreement, person.party, classification, rel, caveats,
                           communities)
        cid = collection or node.default_collection().collection_id
        run = AisIngest(node.publisher, person, cid, marking=marking, rules=rules,
                        window_seconds=window * 60.0)
        stdin = str(file) == "-"
        total = None if stdin else file.stat().st_size
        with _open(file) as stream, _bar(total) as advance:
            summary = run.run(stream, progress=advance)
    finally:
        node.close()
    _report(file, principal.name, person.party, marking, summary)
    if summary.accepted == 0 and (summary.rejected or summary.stats.sentences):
        sys.exit(1)


@contextmanager
def _open(file: Path) -> Iterator[BinaryIO]:
    if str(file) == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = file.open("rb")
    except OSError as exc:
        raise IntelpactError(f"{file}: cannot read: {exc.strerror}") from None
    with stream:
        yield stream


def _counts(counter: dict[str, int] | dict[int, int], unit: str = "") -> str:
    return ", ".join(f"{k}{unit} {v:,}" for k, v in sorted(counter.items(),
                                                          key=lambda kv: (-kv[1], kv[0])))


def _report(file: Path, name: str, party: str, marking: MarkingRequest,
            summary: IngestSummary) -> None:
    s = summary.stats
    words = " // ".join(x for x in (marking.classification, "/".join(marking.caveats),
                                    "/".join(marking.communities),
                                    "REL TO " + ", ".join(marking.rel_to)
                                    if marking.rel_to else "") if x)
    out.print(f"Ingested {_safe(file)} as {_safe(name)} ({party}) under {_safe(words)}")
    skipped = sum(s.skipped.values())
    out.print(f"  lines      {s.lines:,}: {s.sentences:,} AIS sentences, {skipped:,} skipped"
              + (f" ({_counts(s.skipped)})" if skipped else ""))
    messages = sum(s.messages.values())
    out.print(f"  decoded    {s.decoded:,} sentences into {messages:,} messages"
              + (f" (type {_counts({f'{k}': v for k, v in s.messages.items()})})"
                 if messages else ""))
    out.print(f"  reports    {s.positions:,} positions, {s.statics:,} static reports, "
              f"{s.no_position:,} with no position (lat 91 / lon 181: not available)")
    bad = sum(s.bad.values())
    out.print(f"  refused    {bad:,} sentences" + (f": {_counts(s.bad)}" if bad else ""))
    alerts = sum(summary.alerts.values())
    out.print(f"  published  {summary.vessels:,} vessels, {summary.sightings:,} tracks, "
              f"{alerts:,} alerts" + (f" ({_counts(summary.alerts)})" if alerts else "")
              + (f", {summary.updated:,} updated (dark vessels back)" if summary.updated
                 else "")
              + f": {summary.accepted:,} objects accepted, {summary.rejected:,} rejected")
    for oid, message in summary.failures:
        out.print(f"  rejected {_safe(oid)}: {_safe(message)}")
    if summary.rejected > len(summary.failures):
        out.print(f"  … and {summary.rejected - len(summary.failures)} more")
    rate = s.sentences / summary.seconds if summary.seconds > 0 else 0.0
    out.print(f"  time       {summary.seconds:.1f} s ({rate:,.0f} sentences/s)")
