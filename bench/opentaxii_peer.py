"""OpenTAXII 0.9.3 as a benchmark peer: a gunicorn config with one fix, and its set-up.

This file runs in OpenTAXII's own environment (.venv-opentaxii), never in .venv:

- ``gunicorn -c bench/opentaxii_peer.py opentaxii.http:app`` serves OpenTAXII with the
  fix below. gunicorn executes this file in its master process before the workers
  fork and import the app, so the patched module is what every worker uses.
- ``python bench/opentaxii_peer.py setup USER:PASSWORD ...`` (with OPENTAXII_CONFIG set)
  makes the TAXII 2.1 API root, one collection and admin accounts in OpenTAXII's SQL
  database, and prints their ids as JSON.

The fix. OpenTAXII 0.9.3, the latest release, answers every TAXII 2.1 POST to an
objects endpoint (and the status endpoint) with a 500: ``make_taxii2_response``
serialises the job's ``id``, a ``uuid.UUID``, with a bare ``json.dumps``
(eclecticiq/OpenTAXII#243; fixed upstream, unreleased). The upstream fix serialises
with ``default=str``; so does this one, by giving ``opentaxii.taxii2.http`` a ``json``
whose ``dumps`` does that. Nothing else in OpenTAXII changes, and a response that
serialised before serialises to the same bytes.

Accounts are admins: OpenTAXII has no access control below a collection, and 0.9.3's
per-collection TAXII 2 permissions cannot be granted through its account model (it
stores one of 'read'/'modify' per collection, while the TAXII 2 check looks for "read"
in ``set(...)`` of that string, i.e. among its letters).
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any


def _dumps(obj: Any, **kwargs: Any) -> str:
    kwargs.setdefault("default", str)
    return json.dumps(obj, **kwargs)


def patch() -> None:
    """Make OpenTAXII's TAXII 2 responses serialise UUIDs (eclecticiq/OpenTAXII#243)."""
    import opentaxii.taxii2.http as taxii2_http

    taxii2_http.json = types.SimpleNamespace(dumps=_dumps)


def setup(accounts: list[str]) -> dict[str, str]:
    from opentaxii.cli import app

    with app.app_context():
        api = app.taxii_server.servers.taxii2.persistence.api
        root = api.add_api_root(title="bench", description="intelpact benchmark peer",
                                default=True)
        collection = api.add_collection(api_root_id=str(root.id), title="bench",
                                        description="intelpact benchmark peer")
        for account in accounts:
            name, _, password = account.partition(":")
            app.taxii_server.auth.api.create_account(username=name, password=password,
                                                     is_admin=True)
    return {"api_root": str(root.id), "collection": str(collection.id)}


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "setup":
        sys.exit("usage: OPENTAXII_CONFIG=FILE python opentaxii_peer.py setup USER:PASSWORD ...")
    print(json.dumps(setup(sys.argv[2:])))
else:  # imported by gunicorn as its config file
    patch()
