"""The console's tests: a real JPN node served on 127.0.0.1 by uvicorn (TAXII and the
console on one listener, as `intelpact serve` does), people of both parties, and a
logged-in HTTP client per person."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from intelpact.interfaces.console import Console, mount
from intelpact.interfaces.server import taxii_server_options
from intelpact.interfaces.taxii import TaxiiApi
from intelpact.model import national_marking
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest

from helpers import _in_thread, free_port, indicator, make_node

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


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = make_node(tmp_path_factory.mktemp("console") / "jpn")
    objects = populate(node)
    app, console, options = serve_console(node)
    with _in_thread(app, options):
        world = World(node, f"http://127.0.0.1:{options['port']}", console, objects)
        yield world
        for client in world.clients:
            client.close()
    node.close()
