"""The console in a real browser: Debian's headless Chromium driven by Playwright
(no browser download). Skipped, with the reason printed, when either is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conftest import Pact, World, courier, password
from intelpact.store.base import Query

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed: pip install -e '.[dev]'")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (apt-get install chromium): browser tests skipped",
                allow_module_level=True)
COLOURS = {"unclassified": "rgb(0, 122, 51)", "restricted": "rgb(80, 43, 133)",
           "confidential": "rgb(0, 51, 160)", "secret": "rgb(200, 16, 46)",
           "top-secret": "rgb(255, 140, 0)"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any, world: World) -> Iterator[Any]:
    context = browser.new_context(base_url=world.url)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    context.close()


def log_in(page: Any, who: str) -> None:
    page.goto("/")
    assert "/login" in page.url
    page.fill("#name", who)
    page.fill("#password", password(who))
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def banner_of(page: Any) -> tuple[str, str, str]:
    top = page.locator("#banner-top")
    bottom = page.locator("#banner-bottom")
    assert top.inner_text() == bottom.inner_text()
    return (top.inner_text(), top.get_attribute("data-band"),
            top.evaluate("e => getComputedStyle(e).backgroundColor"))


def test_log_in_search_open_and_banners(page: Any, world: World) -> None:
    log_in(page, "tanaka")
    text, band, colour = banner_of(page)
    assert text.startswith("機密") and band == "top-secret" and colour == COLOURS[band]
    page.fill("#q", "open-harbour")
    page.press("#q", "Enter")
    page.wait_for_load_state()
    links = page.locator("a.name")
    assert links.count() == 1
    links.first.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "open-harbour"
    text, band, colour = banner_of(page)
    assert text == "指定なし // REL TO JPN, NZL" and colour == COLOURS["unclassified"]
    page.click("text=Raw JSON")
    assert "open-harbour" in page.locator("pre.raw").inner_text()


def test_not_found_page_is_the_same_for_hidden_and_missing(page: Any, world: World) -> None:
    log_in(page, "suzuki")
    hidden = world.names["kimitsu-jpneo"]
    page.goto(f"/objects/{hidden}")
    hidden_text = page.locator("main").inner_text()
    page.goto("/objects/indicator--00000000-0000-4000-8000-000000000000")
    assert page.locator("main").inner_text() == hidden_text
    assert "No such object" in hidden_text


def test_publish_with_a_marking_and_live_preview(page: Any, world: World) -> None:
    log_in(page, "tanaka")
    page.goto("/publish")
    page.check("input[name=kind][value=indicator]")
    page.fill("#name", "browser-published beacon")
    page.fill("#pattern", "[ipv4-addr:value = '203.0.113.5']")
    page.select_option("#level", "極秘")
    page.check("input[name=rel][value=NZL]")
    # expect() polls from Playwright's own world: no eval under the page's CSP
    sync_api.expect(page.locator("#preview")).to_have_text("極秘 // REL TO JPN, NZL")
    assert page.locator("#preview").evaluate(
        "e => getComputedStyle(e).backgroundColor") == COLOURS["secret"]
    page.click("button:has-text('Publish')")
    page.wait_for_load_state()
    assert "1 accepted" in page.locator("section.status").inner_text()
    page.goto("/?q=browser-published")
    assert page.locator("a.name").count() == 1


def test_keyboard_reaches_the_content(page: Any, world: World) -> None:
    log_in(page, "sato")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_reading_works_without_javascript(browser: Any, world: World) -> None:
    context = browser.new_context(base_url=world.url, java_script_enabled=False)
    tab = context.new_page()
    try:
        log_in(tab, "sato")
        tab.goto("/?q=maritime-patrol")
        assert tab.locator("a.name").count() == 1
    finally:
        context.close()


@contextmanager
def _officer_tab(browser: Any, pact: Pact) -> Iterator[Any]:
    """A tab on JPN's console (the ``pact`` nodes), logged in as its security officer."""
    context = browser.new_context(base_url=pact.url)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    try:
        log_in(tab, "kobayashi")
        yield tab
    finally:
        context.close()


def test_approve_and_refuse_a_consent_on_the_desk(browser: Any, pact: Pact) -> None:
    approved_obj, approve = pact.ask("browser-approves-this")
    refused_obj, refuse = pact.ask("browser-refuses-this")
    with _officer_tab(browser, pact) as tab:
        tab.click("text=Security desk")
        tab.wait_for_url("**/desk")
        row = tab.locator(f"#consent-{approve}")
        assert "pending" in row.locator("td.status").inner_text()
        row.locator("input[name=days]").fill("14")
        row.locator("button:has-text('Approve')").click()
        tab.wait_for_url("**/desk#consents")
        status = tab.locator(f"#consent-{approve} td.status").inner_text()
        assert status.startswith("approved until ")
        row = tab.locator(f"#consent-{refuse}")
        row.locator("input[name=reason]").fill("the source is at risk")
        row.locator("button:has-text('Refuse')").click()
        tab.wait_for_load_state()
        assert tab.locator(f"#consent-{refuse} td.status").inner_text() == \
            "refused: the source is at risk"
        assert tab.locator(f"#consent-{refuse} form").count() == 0
    record = pact.jpn.store.consent(approve)
    assert record is not None and record.token and record.expires and record.expires in status
    no = pact.jpn.store.consent(refuse)
    assert no is not None and no.status == "refused" and no.reason == "the source is at risk"
    assert courier(pact.jpn, lambda c: c.deliver_notices("NZL")) == 2
    queued = {row.object_id for _, row in pact.nzl.store.pending("AUS", 100)}
    assert approved_obj in queued and refused_obj not in queued


def test_a_partner_s_handling_of_our_objects_opens_from_the_desk(
        browser: Any, pact: Pact, tmp_path: Any) -> None:
    obj, _ = pact.ask("browser-sees-how-nzl-handled-this")
    nzl = pact.nzl
    nzl.find(nzl.people.as_person("mere"), nzl.default_collection().collection_id,
             Query(ids=(obj,)), via="object")
    assert courier(pact.jpn, lambda c: c.watch_once("NZL")) > 0
    with _officer_tab(browser, pact) as tab:
        tab.goto("/desk")
        tab.click('a[href="/desk/partner/NZL"]')
        tab.wait_for_url("**/desk/partner/NZL")
        assert tab.locator('tr[id^="kept-"]').count() >= 2
        tab.select_option("select[name=kind]", "read")
        tab.fill("input[name=object]", obj)
        tab.click("form.filters button")
        tab.wait_for_url("**/desk/partner/NZL?kind=read*")
        kinds = tab.locator('tr[id^="kept-"] td:nth-child(4)').all_inner_texts()
        assert kinds == ["read"]
        assert "(NZL, SECRET)" in tab.locator('tr[id^="kept-"]').inner_text()
        tab.screenshot(path=str(tmp_path / "partner.png"), full_page=True)


MAIN_PAGES = ("/", "/?q=reef", "/objects/{oid}", "/objects/{oid}/raw", "/publish", "/desk")


def _pages(world: World) -> list[str]:
    oid = world.names["hi-rel-nzl"]  # portions, withheld parts, links: the busiest page
    return [p.format(oid=oid) for p in MAIN_PAGES]


def test_at_200_percent_zoom_nothing_scrolls_sideways_and_banners_stay(
        browser: Any, world: World) -> None:
    # 200 % zoom of a 1280 × 800 window: a 640 × 400 CSS-pixel viewport at 2 device
    # pixels per CSS pixel (what the browser lays out when zoomed)
    context = browser.new_context(base_url=world.url, device_scale_factor=2,
                                  viewport={"width": 640, "height": 400})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    try:
        log_in(tab, "tanaka")
        for path in _pages(world):
            tab.goto(path)
            sizes = tab.evaluate("""() => ({
                scroll: document.documentElement.scrollWidth,
                width: document.documentElement.clientWidth,
                zoom: window.devicePixelRatio})""")
            assert sizes["zoom"] == 2
            assert sizes["scroll"] <= sizes["width"], (path, sizes)
            for where in ("0", "document.body.scrollHeight / 2",
                          "document.body.scrollHeight"):
                tab.evaluate(f"() => window.scrollTo(0, {where})")
                top = tab.evaluate("""() => { const r = document.getElementById(
                    'banner-top').getBoundingClientRect(); return [r.top, r.bottom,
                    r.right, document.documentElement.clientWidth]; }""")
                assert top[0] == 0 and top[1] > 0 and top[2] <= top[3], (path, where, top)
            bottom = tab.evaluate("""() => { const r = document.getElementById(
                'banner-bottom').getBoundingClientRect(); return [r.top, r.bottom,
                window.innerHeight]; }""")
            assert 0 <= bottom[0] < bottom[1] <= bottom[2] + 1, (path, bottom)
    finally:
        context.close()


FOCUSABLE = """() => {
    const all = [...document.querySelectorAll('a[href], button, input, select, textarea,'
        + ' [tabindex]')].filter(e => e.type !== 'hidden' && !e.disabled
        && e.tabIndex >= 0 && (e.offsetParent !== null || e.classList.contains('skip')));
    const stops = new Set();
    all.forEach((e, i) => {  // a radio group is one Tab stop (arrows move within it)
        const key = e.type === 'radio' ? 'radio:' + e.name : String(i);
        e.setAttribute('data-kb', key); stops.add(key); });
    return [...stops];
}"""
FOCUSED = """() => { const e = document.activeElement; const s = getComputedStyle(e);
    return [e.getAttribute('data-kb'), s.outlineStyle, parseFloat(s.outlineWidth),
            s.outlineColor]; }"""


def test_every_control_of_the_main_pages_is_reached_by_tab_with_a_visible_focus(
        page: Any, world: World) -> None:
    log_in(page, "tanaka")
    for path in _pages(world):
        page.goto(path)
        stops = page.evaluate(FOCUSABLE)
        dates = page.locator("input[type=date]").count()  # Tab visits day, month, year
        reached: set[str] = set()
        for _ in range(len(stops) + 2 * dates + 3):
            page.keyboard.press("Tab")
            key, style, width, colour = page.evaluate(FOCUSED)
            if key is None:
                continue  # the page itself, past the last control
            assert style == "solid" and width >= 2, (path, key, style, width)
            assert colour == "rgb(255, 140, 0)", (path, key, colour)
            reached.add(key)
        missing = set(stops) - reached
        assert not missing and len(stops) > 5, (path, sorted(missing))
