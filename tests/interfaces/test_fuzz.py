"""schemathesis against live nodes on 127.0.0.1, from the OpenAPI documents they serve.

The TAXII API is fuzzed as a publisher (with data in the store), as a person who
may see nothing, and with no credentials; the federation API as a pinned partner
node over mutual TLS, with every request signed (so it gets past the signature
check) and unsigned. For every generated request: no 5xx, the status, content
type, headers and body are what the document says, and the answer comes within
TIMEOUT seconds (no hang). Examples are bounded so the file runs in well under a
minute; docs/reliability.md says what it found.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from intelpact.interfaces.openapi import (
    FEDERATION_DOCUMENT_PATH,
    TAXII_DOCUMENT_PATH,
    federation_document,
    taxii_document,
)
from intelpact.model import national_marking
from intelpact.services.federation import Identity, make_card, sign_request
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest

from helpers import indicator, make_node, serving, serving_federation

TAXII = "application/taxii+json;version=2.1"
PW = "fuzzing-test-password"
ROOT = "intel"  # the api root make_node gives
TIMEOUT = 10.0  # seconds: a request that takes longer is a hang
SCALE = int(os.environ.get("INTELPACT_FUZZ_SCALE", "1"))  # e.g. 20 for a long run
EXAMPLES = {GenerationMode.POSITIVE: 8 * SCALE, GenerationMode.NEGATIVE: 6 * SCALE}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
TAXII_OPERATIONS = [(m.upper(), path) for path, item in taxii_document(ROOT, 1)["paths"].items()
                    for m in item if m != "parameters"]
FEDERATION_OPERATIONS = [(m.upper(), path) for path, item in
                         federation_document(1)["paths"].items() for m in item]


def _ops(operations: list[tuple[str, str]]) -> list[Any]:
    return [pytest.param(m, p, id=f"{m} {p}") for m, p in operations]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
SIGNATURE_HEADERS = ("X-Intelpact-Party", "X-Intelpact-Date", "X-Intelpact-Agreement",
                     "X-Intelpact-Signature")
UNSIGNED_READS = {("GET", "/federation/card"), ("GET", FEDERATION_DOCUMENT_PATH)}
# Negative data is rejected with schemathesis's statuses, and 413: the documents give a
# list's maxItems, and a longer one is refused as too large (a generated body may hold
# more than 10,000 objects or consent tokens).
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415",
                          "422", "428", "429", "5xx"]}}})


def _fuzz(strategy: st.SearchStrategy[Case], mode: GenerationMode, session: requests.Session,
          headers: dict[str, str], drop: tuple[str, ...] = (), **transport: Any) -> None:
    """Send EXAMPLES[mode] generated requests and check every answer."""
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Case) -> None:
        for name in drop:
            if case.headers:
                case.headers.pop(name, None)
        case.call_and_validate(session=session, headers=headers, checks=checks,
                               timeout=TIMEOUT, **transport)

    run()


# -- TAXII ------------------------------------------------------------------------------

@dataclass
class Taxii:
    node: Node
    url: str
    schema: Any
    cid: str
    oids: list[str]
    status_id: str


@pytest.fixture(scope="module")
def taxii_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Taxii]:
    node = make_node(tmp_path_factory.mktemp("fuzz") / "jpn")
    node.people.add("pub", party="JPN", clearance="機密", communities=["MARITIME"],
                    roles=["analyst", "publisher", "security-officer"], password=PW)
    node.people.add("nobody", party="NZL", clearance="UNCLASSIFIED", roles=["analyst"],
                    password=PW)
    pub = node.people.as_person("pub").person
    cid = node.default_collection().collection_id
    top = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])
    node.publisher.publish(pub, cid, [top])
    objects = [indicator("fuzz target"), indicator("with a portion", granular_markings=[
        {"selectors": ["description"], "marking_ref": top["id"]}])]
    status = node.publisher.publish(pub, cid, objects,
                                    marking=MarkingRequest("秘", ("NZL",), (), ("MARITIME",)))
    assert status.body["failure_count"] == 0, status.body
    with serving(node) as url:
        schema = schemathesis.openapi.from_url(f"{url}{TAXII_DOCUMENT_PATH}", auth=("pub", PW),
                                               config=CONFIG, timeout=TIMEOUT)
        yield Taxii(node, url, schema, cid, [o["id"] for o in objects], status.status_id)
    node.close()


def _basic(name: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{PW}".encode()).decode()


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("who", ["pub", "nobody", None], ids=["publisher", "sees-nothing",
                                                             "anonymous"])
@pytest.mark.parametrize("method,path", _ops(TAXII_OPERATIONS))
def test_taxii_api_conforms_to_its_document(taxii_node: Taxii, method: str, path: str,
                                            who: str | None, mode: GenerationMode) -> None:
    t = taxii_node
    operation = t.schema[path][method]
    headers = {"Accept": TAXII}
    if who is not None:
        headers["Authorization"] = _basic(who)
    fixed: list[dict[str, str]] = [{}]
    if "{cid}" in path:  # the real collection (a generated one is a 404 before anything else)
        fixed = [{"cid": t.cid}]
        if "{oid}" in path:
            fixed = [{"cid": t.cid}, *({"cid": t.cid, "oid": oid} for oid in t.oids)]
    if "{status_id}" in path:
        fixed = [{}, {"status_id": t.status_id}]
    strategy = st.one_of([operation.as_strategy(generation_mode=mode, path_parameters=p)
                          for p in fixed])
    with requests.Session() as session:
        _fuzz(strategy, mode, session, headers, drop=() if who else ("Authorization",))


def test_the_taxii_document_is_served_to_people_whatever_they_accept(
        taxii_node: Taxii) -> None:
    url = f"{taxii_node.url}{TAXII_DOCUMENT_PATH}"
    for accept in ("application/json", "*/*", TAXII):
        r = httpx.get(url, auth=("nobody", PW), headers={"Accept": accept})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json()["servers"] == [{"url": taxii_node.url}]
        assert set(r.json()["paths"]) == set(taxii_document(ROOT, 1)["paths"])
    r = httpx.get(url, headers={"Accept": "application/json"})
    assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]


def test_a_method_a_path_does_not_serve_is_405_with_allow(taxii_node: Taxii) -> None:
    r = httpx.put(f"{taxii_node.url}/taxii2/", headers={"Accept": TAXII})
    assert r.status_code == 405 and r.json()["http_status"] == "405"
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}


# -- federation ---------------------------------------------------------------------------

class Signed(requests.auth.AuthBase):
    """Signs every request as the partner node does (services/courier.py)."""

    def __init__(self, me: Identity, always: bool) -> None:
        self.me = me
        self.always = always  # else only when the generated request has the headers

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(r.url)
        target = url.path + (f"?{url.query}" if url.query else "")
        body = r.body.encode() if isinstance(r.body, str) else (r.body or b"")
        if self.always or all(h in r.headers for h in SIGNATURE_HEADERS):
            # generated: made real; absent (a negative case left one out): unsigned
            r.headers.update(sign_request(self.me, r.method or "GET", target, body))
        return r


@dataclass
class Federation:
    url: str
    schema: Any
    partner: Node
    ca: str
    client: tuple[str, str]

    def session(self, signed: bool, always: bool = True) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.verify, s.cert = self.ca, self.client
        if signed:
            s.auth = Signed(self.partner.identity, always)
        return s


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    base = tmp_path_factory.mktemp("fuzz-fed")
    jpn, nzl = make_node(base / "jpn", "JPN"), make_node(base / "nzl", "NZL")
    jpn.people.add("officer", party="JPN", clearance="機密", password=PW,
                   roles=["analyst", "publisher", "security-officer"])
    jpn.federation.add_peer(make_card(nzl.identity))
    nzl.federation.add_peer(make_card(jpn.identity))
    officer = jpn.people.as_person("officer").person
    status = jpn.publisher.publish(officer, jpn.default_collection().collection_id,
                                   [indicator("for NZ")], marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0
    assert jpn.config.tls_cert and nzl.config.tls_cert and nzl.config.tls_key
    ca, client = str(jpn.config.tls_cert), (str(nzl.config.tls_cert), str(nzl.config.tls_key))
    with serving_federation(jpn) as url:
        schema = schemathesis.openapi.from_url(f"{url}{FEDERATION_DOCUMENT_PATH}", verify=ca,
                                               cert=client, config=CONFIG,
                                               timeout=TIMEOUT)
        yield Federation(url, schema, nzl, ca, client)
    jpn.close()
    nzl.close()


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("method,path", _ops(FEDERATION_OPERATIONS))
def test_federation_api_conforms_to_its_document(federation: Federation, method: str,
                                                 path: str, signed: bool,
                                                 mode: GenerationMode) -> None:
    if mode is GenerationMode.NEGATIVE and (method, path) in UNSIGNED_READS:
        pytest.skip("no parameter, body or signature: nothing to make invalid")
    operation = federation.schema[path][method]
    with federation.session(signed, always=False) as session:
        _fuzz(operation.as_strategy(generation_mode=mode), mode, session,
              {"Accept": TAXII}, verify=federation.ca, cert=federation.client)


def test_signed_fuzzing_gets_past_the_signature_check(federation: Federation) -> None:
    """The fuzzing above is only worth something if signed requests are accepted."""
    with federation.session(signed=True) as s:
        r = s.get(f"{federation.url}/federation/collections/outbox/objects/",
                  params={"limit": "5"}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        assert "for NZ" in [o.get("name") for o in r.json()["objects"]]
    with federation.session(signed=False) as s:
        r = s.get(f"{federation.url}/federation/collections/outbox/objects/", timeout=TIMEOUT)
        assert r.status_code == 403 and r.json()["http_status"] == "403"


def test_the_federation_document_lists_every_route(federation: Federation) -> None:
    from intelpact.interfaces.federation import create_federation_app

    app = create_federation_app(federation.partner)
    routes = {(m, r.path) for r in app.routes for m in (getattr(r, "methods", None) or ())
              if m != "HEAD"}
    assert routes == set(FEDERATION_OPERATIONS)
    with federation.session(signed=False) as s:
        r = s.get(f"{federation.url}{FEDERATION_DOCUMENT_PATH}", timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["servers"] == [{"url": federation.url}]


def test_the_taxii_document_lists_every_route(taxii_node: Taxii) -> None:
    from intelpact.interfaces.taxii import create_app

    app = create_app(taxii_node.node)
    routes = {(m, r.path) for r in app.routes for m in (getattr(r, "methods", None) or ())
              if m != "HEAD"}
    assert routes == set(TAXII_OPERATIONS)




# -- what the fuzzing found: each a regression test -------------------------------------------

@pytest.mark.parametrize("path,params", [
    ("/federation/collections/outbox/objects/", {"next": "9" * 30}),  # was a 500: overflow
    ("/federation/collections/outbox/objects/", {"next": "²"}),  # was a 500: int('²')
    ("/federation/collections/outbox/objects/", {"limit": "+5"}),
    ("/federation/audit", {"after": str(2**63)}),  # was a 500: overflow
    ("/federation/audit", {"known": "1_0"}),  # int() took it
    ("/federation/audit", {"limit": " 5"}),
])
def test_federation_integers_out_of_range_or_odd_are_400(federation: Federation, path: str,
                                                         params: dict[str, str]) -> None:
    with federation.session(signed=True) as s:
        r = s.get(f"{federation.url}{path}", params=params, timeout=TIMEOUT)
    assert r.status_code == 400, r.text
    assert r.json()["http_status"] == "400" and list(params)[0] in r.json()["description"]


def test_taxii_limit_and_next_with_odd_digits_are_400(taxii_node: Taxii) -> None:
    url = f"{taxii_node.url}/{ROOT}/collections/{taxii_node.cid}/objects/"
    get = {"headers": {"Accept": TAXII}, "auth": ("pub", PW)}
    assert httpx.get(url, params={"limit": "²"}, **get).status_code == 400  # was a 500
    first = httpx.get(url, params={"limit": "1"}, **get).json()
    assert httpx.get(url, params={"limit": "1", "next": first["next"]}, **get).status_code == 200
    for forged in ("9" * 30, "²", first["next"] + "²"):  # were 500s: an overflow, int('²')
        r = httpx.get(url, params={"limit": "1", "next": forged}, **get)
        assert r.status_code == 400 and r.json()["title"] == "Bad 'next' value"
