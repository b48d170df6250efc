"""The console in a real browser: Debian's headless Chromium driven by Playwright
(no browser download). Skipped, with the reason printed, when either is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import World, password

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
