"""HTML escaping: every naughty string (tests/data/json/naughty-strings) published as an
object's name and description, then shown on the search page and its object's page,
comes back as text: no element, attribute, script or URL of its making."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest

from conftest import World, serving_world
from intelpact.services.publish import MarkingRequest

from helpers import DATA, indicator

OURS = {"/static/console.js"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key.startswith("on"):
                self.problems.append(f"<{tag} {key}=…>")
            if key in ("href", "src", "action") and value and not value.startswith(("/", "#")):
                self.problems.append(f"<{tag} {key}={value!r}>")
        if tag in ("script", "iframe", "object", "embed", "img", "svg", "math", "base"):
            src = dict(attrs).get("src")
            if not (tag == "script" and src in OURS):
                self.problems.append(f"<{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def naughty_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A node of its own: hundreds of objects would push others off the first pages."""
    with serving_world(tmp_path_factory.mktemp("naughty")) as world:
        yield world


def test_naughty_strings_are_shown_as_text(naughty_world: World) -> None:
    world = naughty_world
    strings = json.loads((DATA / "json" / "naughty-strings" / "blns.json").read_text())
    strings = [s for s in strings if s.strip()]
    node = world.node
    tanaka = node.people.as_person("tanaka").person
    objects = [indicator(f"naughty {i}: {s}", description=s) for i, s in enumerate(strings)]
    cid = node.default_collection().collection_id
    status = node.publisher.publish(tanaka, cid, objects, marking=MarkingRequest(
        "秘", ("JPN", "NZL"), (), ()))
    accepted = {s["id"] for s in status.body["successes"]}
    assert len(accepted) >= 0.9 * len(objects), status.body["failures"][:3]
    client = world.client("tanaka")
    seen = 0
    page = client.get("/", params={"q": "naughty "})
    pages = [page.text]
    while 'rel="next"' in page.text and len(pages) < 20:
        link = page.text.split('class="more" href="', 1)[1].split('"', 1)[0]
        page = client.get(html.unescape(link))
        pages.append(page.text)
    for obj in objects:
        if obj["id"] in accepted and seen < 120:
            r = client.get(f"/objects/{obj['id']}")
            assert r.status_code == 200
            pages.append(r.text)
            seen += 1
            parser = _Tags()
            parser.feed(r.text)
            assert obj["name"].strip() in " ".join(parser.text) or "\r" in obj["name"] \
                or "\x00" in obj["name"] or any(ord(c) < 32 for c in obj["name"])
    for text in pages:
        parser = _Tags()
        parser.feed(text)
        assert parser.problems == [], parser.problems[:5]
