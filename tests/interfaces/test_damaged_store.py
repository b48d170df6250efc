"""A SQLite store damaged, or written to by something other than intelpact: every
interface says so in one clear line, and quotes nothing of what it could not read."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from intelpact.interfaces.cli import main
from intelpact.logs import LOG_LEVEL_ENV, configure_logging
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import Query

from helpers import indicator, make_node, serving, sqlite_only

# Each test's damage is bytes that are not UTF-8 in a text column (or a file that is not
# a database): SQLite keeps them, PostgreSQL refuses them when they are written.
pytestmark = sqlite_only("PostgreSQL's text holds only UTF-8: it refuses other bytes, "
                         "so this damage cannot be written to it")

PW = "a long password here"
SECRET = "the source's name"
TAXII = "application/taxii+json;version=2.1"
DAMAGED = "the node's database cannot be read: Could not decode to UTF-8 column 'body'"


@pytest.fixture()
def damaged(tmp_path: Path) -> Path:
    """A node whose one object's body was altered in the file into bytes that are not
    UTF-8 (SQLite keeps them as text; Python's sqlite3 refuses to read them), around
    words of the object itself."""
    node = make_node(tmp_path / "jpn")
    node.people.add("aki", party="JPN", clearance="秘", roles=["analyst", "publisher"],
                    password=PW)
    obj = indicator("bit rot", description=SECRET)
    status = node.publisher.publish(node.people.as_person("aki").person,
                                    node.default_collection().collection_id, [obj],
                                    marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0
    with node.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - damage
        c.execute("UPDATE objects SET body = CAST(? AS TEXT) WHERE object_id = ?",
                  (f'{{"description":"{SECRET}\xff"}}'.encode("latin-1"), obj["id"]))
    node.close()
    return tmp_path / "jpn"


@pytest.mark.parametrize("command", [
    ["get", "{dir}", "{id}", "--as", "aki"],
    ["search", "{dir}", "source", "--as", "aki"],  # in the damaged body: the index finds it
    ["export", "{dir}", "--as", "aki"],
], ids=["get", "search", "export"])
def test_a_command_on_a_damaged_store_says_so_in_one_line(
        damaged: Path, command: list[str]) -> None:
    (oid,) = [r[0] for r in sqlite3.connect(damaged / "node.db").execute(
        "SELECT object_id FROM objects WHERE object_type = 'indicator'")]
    result = CliRunner().invoke(main, [a.format(dir=damaged, id=oid) for a in command])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith(f"error: {DAMAGED}\nhint: it was damaged, or written "
                                    "to by something other than intelpact"), result.output
    assert SECRET not in result.output and "Traceback" not in result.output


def test_a_file_that_is_not_a_database_is_one_clear_error(damaged: Path, tmp_path: Path
                                                          ) -> None:
    junk = tmp_path / "junk"
    shutil.copytree(damaged, junk)
    (junk / "node.db").write_bytes(b"\x00intelpact? no" * 100)
    result = CliRunner().invoke(main, ["user", "list", str(junk)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith("error: the node's database cannot be read: file is "
                                    "not a database\nhint: "), result.output


def test_a_read_of_a_damaged_store_is_a_500_logged_without_what_it_holds(
        damaged: Path, caplog: pytest.LogCaptureFixture) -> None:
    node = Node.open(damaged)
    try:
        cid = node.default_collection().collection_id
        with serving(node) as url, caplog.at_level(logging.ERROR, logger="intelpact"):
            r = httpx.get(f"{url}/intel/collections/{cid}/objects/", auth=("aki", PW),
                          headers={"Accept": TAXII})
    finally:
        node.close()
    assert r.status_code == 500 and r.headers["content-type"] == TAXII
    assert r.json()["title"] == "Internal error" and SECRET not in r.text
    (record,) = [rec for rec in caplog.records if rec.name == "intelpact.taxii"]
    assert record.getMessage() == (f"unexpected error on GET /intel/collections/{cid}/"
                                   f"objects/: {DAMAGED}")
    assert record.exc_info is None and SECRET not in caplog.text


def test_no_line_of_a_serving_node_s_log_quotes_a_value_it_could_not_read(
        damaged: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever logs SQLite's error, with its traceback or in its message (a courier's
    round, the search indexer's): `serve`'s log (configure_logging) cuts the value."""
    logger = logging.getLogger("intelpact")
    kept = logger.handlers[:], logger.level
    monkeypatch.setenv(LOG_LEVEL_ENV, "info")  # configure_logging sets it: undone after
    node = Node.open(damaged)
    try:
        configure_logging("info")
        with pytest.raises(sqlite3.OperationalError) as raised:
            node.store.versions_after(-1, 100)
        log = logging.getLogger("intelpact.courier")
        log.error("a round failed: %s", raised.value)
        log.error("a round failed", exc_info=raised.value)
    finally:
        node.close()
        logger.handlers[:], logger.level = kept[0], kept[1]
    err = capfd.readouterr().err
    assert SECRET in str(raised.value) and SECRET not in err
    lines = [line for line in err.splitlines() if "Could not decode" in line]
    assert len(lines) == 2 and all(line.endswith("Could not decode to UTF-8 column 'body' "
                                                 "(its value is not logged)")
                                   for line in lines), err


def test_the_search_index_goes_past_a_damaged_row(damaged: Path) -> None:
    """The index folds its text in Python (fold_text), and sqlite3 cannot hand a function
    text that is not UTF-8: the indexer failed at the damaged row, every round, and
    indexed nothing stored after it. The row is indexed as stored; the objects after it
    are found."""
    node = Node.open(damaged)
    try:
        aki = node.people.as_person("aki")
        later = indicator("stored after the damage", description="a later Straße report")
        status = node.publisher.publish(aki.person, node.default_collection().collection_id,
                                        [later], marking=MarkingRequest("秘", ("NZL",)))
        assert status.body["failure_count"] == 0
        while node.store.index_text(1000):
            pass
        page, found = node.find(aki, node.default_collection().collection_id,
                                Query(text="straße", types=("indicator",)))
        assert [json.loads(body)["id"] for _, body in found] == [later["id"]]
    finally:
        node.close()
