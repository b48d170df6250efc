"""The node's log: where a serving node's ``intelpact`` loggers write, from which level
(``intelpact serve --log-level``), and how an unexpected error is written to it."""

from __future__ import annotations

import logging
import os
import time

from .store.sqlite import damage

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_LEVEL_ENV = "INTELPACT_LOG_LEVEL"  # also how `serve --workers N` tells its workers


def configure_logging(level: str) -> None:
    """Send the node's log (the ``intelpact`` loggers) to stderr from ``level`` up, each
    line with its UTC time, level and source: a server's log is read later, by an
    operator, beside its partners'. Without this, Python printed only warnings and
    errors, as bare messages with no time."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                  "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logger = logging.getLogger("intelpact")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    os.environ[LOG_LEVEL_ENV] = level


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
