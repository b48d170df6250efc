"""The node's log: where a serving node's ``intelpact`` loggers write, from which level
(``intelpact serve --log-level``), and how an unexpected error is written to it."""

from __future__ import annotations

import logging
import os
import time

from .store.sqlite import UNDECODABLE, damage

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_LEVEL_ENV = "INTELPACT_LOG_LEVEL"  # also how `serve --workers N` tells its workers


def configure_logging(level: str) -> None:
    """Send the node's log (the ``intelpact`` loggers) to stderr from ``level`` up, each
    line with its UTC time, level and source: a server's log is read later, by an
    operator, beside its partners'. Without this, Python printed only warnings and
    errors, as bare messages with no time."""
    formatter = _Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                           "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logger = logging.getLogger("intelpact")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    os.environ[LOG_LEVEL_ENV] = level


class _Formatter(logging.Formatter):
    """Lines as logging.Formatter makes them, but for the value of a damaged database
    that sqlite3 quotes in its error ("Could not decode to UTF-8 column 'body' with
    text '…'": an object's body, say), which is not for the log: the entry is cut
    there. A process that meets one every round (the search indexer, every 30 s) would
    otherwise write it out every time, whoever wrote the line."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        at = text.find(UNDECODABLE)
        cut = -1 if at < 0 else text.find(" with text '", at)
        return text if cut < 0 else text[:cut] + " (its value is not logged)"


def log_unexpected(log: logging.Logger, exc: BaseException, what: str, *args: object
                   ) -> None:
    """Log ``exc``, unexpected while doing ``what`` (%-formatted with ``args``), with its
    traceback; if it says the database file was damaged (``damage``), as one error line
    that says so, without the value SQLite could not read."""
    problem = damage(exc)
    if problem is None:
        log.error(what, *args, exc_info=exc)
    else:
        log.error(what + ": the node's database cannot be read: %s", *args, problem)
