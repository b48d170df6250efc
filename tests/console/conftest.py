"""The console's tests: a real JPN node served on 127.0.0.1 by uvicorn (TAXII and the
console on one listener, as `intelpact serve` does), people of both parties, and a
logged-in HTTP client per person. ``pact``: a JPN node with its console and an NZL node
(agreement jpn-nzl-aus), paired over real mutual TLS, for consent requests from NZL to
JPN's security desk."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from intelpact.interfaces.console import Console, mount
from intelpact.interfaces.server import taxii_server_options
from intelpact.interfaces.taxii import TaxiiApi
from intelpact.model import national_marking
from intelpact.services.courier import Courier
from intelpact.services.federation import make_card
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest

from helpers import _in_thread, free_port, indicator, make_node, serving_federation

PEOPLE = {
    # name: (party, clearance, roles, communities, caveats) -- as the TAXII tests
    "tanaka": ("JPN", "機密", ["analyst", "publisher", "security-officer"],
               ["MARITIME", "CLIMATE"], ["JPNEO"]),
    "sato": ("JPN", "秘", ["analyst"], ["MARITIME"], []),
    "suzuki": ("JPN", "取扱注意", ["analyst"], [], []),
    "aroha": ("NZL", "SECRET", ["analyst", "publisher"], ["MARITIME"], []),
    "ops": ("JPN", "機密", ["operator"], ["MARITIME", "CLIMATE"], ["JPNEO"]),
}
PLAN = [  # name (unique words, searched for), level, REL TO, caveats, communities
    ("open-harbour", "指定なし", ("JPN", "NZL"), (), ()),
    ("hi-rel-nzl", "秘", ("JPN", "NZL"), (), ()),
    ("gokuhi-rel-nzl", "極秘", ("JPN", "NZL"), (), ()),
    ("gokuhi-jpn-only", "極秘", ("JPN",), (), ()),
    ("kimitsu-jpneo", "機密", ("JPN",), ("JPNEO",), ()),
    ("maritime-patrol", "秘", ("JPN", "NZL"), (), ("MARITIME",)),
    ("climate-buoy", "秘", ("JPN", "NZL"), (), ("CLIMATE",)),
]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def password(name: str) -> str:
    return f"{name}-test-password"


class World:
    def __init__(self, node: Node, url: str, console: Console,
                 objects: dict[str, dict[str, Any]]) -> None:
        self.node = node
        self.url = url
        self.console = console
        self.objects = objects  # id -> body as published
        self.names = {body["name"]: oid for oid, body in objects.items()}
        self.clients: list[httpx.Client] = []

    def client(self, who: str | None = None) -> httpx.Client:
        """A client logged in as ``who`` (None: not logged in)."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=20)
        self.clients.append(client)
        if who is not None:
            login(client, who)
        return client

    def expected_visible(self, who: str) -> set[str]:
        """What the core model says ``who`` may read (the whole object's decision)."""
        principal = self.node.people.as_person(who)
        if not any(principal.has_role(r) for r in ("analyst", "publisher",
                                                   "security-officer")):
            return set()
        return {oid for oid, obj in self.objects.items()
                if self.node.policy.read_object(
                    principal.person, self.node.markings.label(obj)).decision.allowed}


def login(client: httpx.Client, who: str, secret: str | None = None) -> httpx.Response:
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token, page.text
    return client.post("/login", data={"csrf": token.group(1), "name": who,
                                       "password": secret or password(who)})


def csrf_of(client: httpx.Client, path: str = "/") -> str:
    found = CSRF.search(client.get(path).text)
    assert found
    return found.group(1)


def populate(node: Node) -> dict[str, dict[str, Any]]:
    for name, (party, clearance, roles, communities, caveats) in PEOPLE.items():
        node.people.add(name, party=party, clearance=clearance, roles=roles,
                        communities=communities, caveats=caveats, password=password(name))
    tanaka = node.people.as_person("tanaka").person
    top = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])
    cid = node.default_collection().collection_id
    node.publisher.publish(tanaka, cid, [top])
    objects: dict[str, dict[str, Any]] = {}
    for name, level, rel, caveats, communities in PLAN:
        obj = indicator(name, description=f"{name} seen near the reef")
        if name == "hi-rel-nzl":  # a portion above the object's level
            obj["granular_markings"] = [{"selectors": ["description"],
                                         "marking_ref": top["id"]}]
            obj["description"] = "secret-portion-words"
        status = node.publisher.publish(tanaka, cid, [obj], marking=MarkingRequest(
            level, rel, caveats, communities))
        assert status.body["failure_count"] == 0, status.body
        objects[obj["id"]] = node.get(node.people.as_person("tanaka"), obj["id"])[-1]
    return objects


def serve_console(node: Node) -> tuple[Any, Console, dict[str, Any]]:
    """The TAXII app with the console mounted (as create_app does), keeping the console
    at hand so tests can shorten its idle timeout."""
    app = TaxiiApi(node).app
    console = mount(app, node)
    options = taxii_server_options(node, "127.0.0.1", free_port())
    return app, console, options


@contextmanager
def serving_world(folder: Path) -> Iterator[World]:
    """A populated JPN node in ``folder`` with its console served on 127.0.0.1."""
    node = make_node(folder / "jpn")
    objects = populate(node)
    app, console, options = serve_console(node)
    with _in_thread(app, options):
        world = World(node, f"http://127.0.0.1:{options['port']}", console, objects)
        yield world
        for client in world.clients:
            client.close()
    node.close()


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving_world(tmp_path_factory.mktemp("console")) as world:
        yield world


class Pact:
    """JPN (the originator, its console at ``url``) and NZL (a holder that asks JPN's
    consent to pass JPN's objects on to AUS), federated over mutual TLS."""

    def __init__(self, jpn: Node, nzl: Node, url: str) -> None:
        self.jpn, self.nzl, self.url = jpn, nzl, url
        self.clients: list[httpx.Client] = []

    def client(self, who: str) -> httpx.Client:
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=20)
        self.clients.append(client)
        login(client, who)
        return client

    def ask(self, name: str, purpose: str = "joint maritime operation") -> tuple[str, str]:
        """A JPN object REL TO NZL, AUS, pushed to NZL, whose analyst asks JPN's consent to
        pass it on to AUS; the request delivered to JPN. Returns (object id, request id)."""
        obj = indicator(name)
        who = self.jpn.people.as_person("kobayashi").person
        status = self.jpn.publisher.publish(who, self.jpn.default_collection().collection_id,
                                            [obj], marking=MarkingRequest("秘", ("NZL", "AUS")))
        assert status.body["failure_count"] == 0, status.body
        assert courier(self.jpn, lambda c: c.push_all("NZL")) >= 1
        record = self.nzl.consents.request(self.nzl.people.as_person("mere"), obj["id"],
                                           recipient="AUS", purpose=purpose)
        assert courier(self.nzl, lambda c: c.deliver_notices("JPN")) == 1
        return obj["id"], record.request_id


def courier(node: Node, act: Any) -> int:
    """Run one courier step (``act(courier)``) now, as ``intelpact serve``'s courier would."""
    with Courier(node) as c:
        return int(act(c))


@pytest.fixture(scope="package")
def pact(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pact]:
    root = tmp_path_factory.mktemp("pact")
    jpn = make_node(root / "jpn", "JPN", agreement="jpn-nzl-aus.toml")
    nzl = make_node(root / "nzl", "NZL", agreement="jpn-nzl-aus.toml")
    jpn.people.add("kobayashi", party="JPN", clearance="機密", roles=["analyst", "publisher",
                   "security-officer"], password=password("kobayashi"))
    jpn.people.add("ito", party="JPN", clearance="機密", roles=["analyst"],
                   password=password("ito"))
    nzl.people.add("mere", party="NZL", clearance="SECRET", roles=["analyst"])
    jpn.federation.add_peer(make_card(nzl.identity))
    nzl.federation.add_peer(make_card(jpn.identity))
    app, _, options = serve_console(jpn)
    with ExitStack() as stack:
        stack.enter_context(serving_federation(jpn))
        stack.enter_context(serving_federation(nzl))
        stack.enter_context(_in_thread(app, options))
        world = Pact(jpn, nzl, f"http://127.0.0.1:{options['port']}")
        yield world
        for client in world.clients:
            client.close()
    jpn.close()
    nzl.close()
