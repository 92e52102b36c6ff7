"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a live
three-agent fleet: the login link, the three hosts, a pin's custody going from under to ok by
itself (live updates), an invite made from the page, no console errors — and, without the link,
nothing of the fleet. Screenshots go to test-artifacts/dashboard/ (or $TVA_TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.agent.procs import AgentProc, wait_until

CHROMIUM = "/usr/bin/chromium"
IH = "c0" * 20
ARTIFACTS = Path(os.environ.get("TVA_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    alpha, beta, gamma = (AgentProc(root, n) for n in ("alpha", "beta", "gamma"))
    alpha.cli("init", "--name", "home")
    alpha.start()
    try:
        for p in (beta, gamma):
            p.start_join(alpha.cli("invite", "--json")["invite"])
        for p in (alpha, beta, gamma):
            wait_until(lambda p=p: [h["state"] for h in p.cli("hosts", "--json")].count("alive") == 3, 60,
                       f"{p.name} to see three live hosts")
        yield alpha, beta, gamma
    finally:
        for p in (alpha, beta, gamma):
            p.kill()


@pytest.fixture(scope="module")
def browser():
    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: ./setup.sh test installs it (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox"])
        yield b
        b.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def watched_page(browser):
    """A fresh context (its own localStorage) and page, with its console errors collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    return context, page, errors


def shot(page, name: str) -> None:
    out = ARTIFACTS / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def test_the_dashboard_shows_the_fleet_and_custody_moving(fleet, browser):
    alpha, beta, _gamma = fleet
    alpha.cli("holdings", "add", "film", "--infohash", IH, "--size", "1000")
    alpha.cli("pin", "film", "--copies", "2")
    link = alpha.cli("dashboard", "--json")["url"]
    assert "#login=" in link
    context, page, errors = watched_page(browser)
    try:
        page.goto(link)
        page.wait_for_selector("#hosts tbody tr >> nth=2", timeout=20_000)
        rows = page.locator("#hosts tbody tr")
        assert sorted(rows.nth(i).locator("td").first.inner_text() for i in range(3)) == ["alpha", "beta", "gamma"]
        page.wait_for_selector("#hosts tbody tr[data-state='alive'] >> nth=2", timeout=20_000)
        assert "#login" not in page.url  # the one-time code is gone from the address bar and history
        film = page.locator("#custody tbody tr[data-content='film']")
        film.wait_for(timeout=20_000)
        assert film.get_attribute("data-status") == "under"
        shot(page, "1-under")
        # Another host declares a copy: custody is ok on the page without a reload (live updates).
        beta.cli("holdings", "add", "film", "--infohash", IH, "--size", "1000")
        page.wait_for_selector("#custody tbody tr[data-content='film'][data-status='ok']", timeout=30_000)
        assert "ok" in film.locator(".badge").inner_text()
        shot(page, "2-ok")
        # An admin makes an invite from the page (a write: the session and the page's own Origin).
        page.click("#invite-form button[type=submit]")
        expect(page.locator("#invite-token")).to_have_value(re.compile("^tva1:"), timeout=10_000)
        page.fill("#peers-infohash", IH)
        page.click("#peers-form button[type=submit]")
        # The page shows what `peers-for` answers (here the fleet's holders, without tva0 addresses).
        answer = alpha.cli("peers-for", IH, "--json")
        expect(page.locator("#peers-note")).to_contain_text(f"policy public: {len(answer['peers'])} peer(s)",
                                                             timeout=10_000)
        assert page.locator("#peers tbody tr").count() == len(answer["peers"])
        shot(page, "3-invite-and-peers")
        assert errors == [], errors
    finally:
        context.close()


def test_without_the_login_link_the_page_shows_nothing_of_the_fleet(fleet, browser):
    alpha, _beta, _gamma = fleet
    api = alpha.daemon_info()["api"]
    used = alpha.cli("dashboard", "--json")["url"]
    context, page, _errors = watched_page(browser)
    try:
        answered = []
        page.on("response", lambda r: answered.append((r.url, r.status)))
        page.goto(f"http://{api}/")
        page.wait_for_selector("#login:not([hidden])", timeout=10_000)
        assert page.locator("#fleet").is_hidden()
        text = page.content()
        for secret in ("alpha", "beta", "gamma", alpha.peer_id):
            assert secret not in text
        # Only the static page and its two files were fetched: no fleet data answered.
        assert {u.split(api, 1)[1] for u, _ in answered} <= {"/", "/ui/app.js", "/ui/app.css"}, answered
        shot(page, "4-logged-out")
        # A link works once: used in another browser, it is refused there.
        page.goto(used)
        page.wait_for_selector("#fleet:not([hidden])", timeout=20_000)
        other_context, other, _ = watched_page(browser)
        try:
            other.goto(used)
            expect(other.locator("#login-error")).to_contain_text("used", timeout=10_000)
            assert other.locator("#fleet").is_hidden()
            assert "alpha" not in other.content()
        finally:
            other_context.close()
    finally:
        context.close()


def test_the_library_is_searched_and_an_item_played_from_the_page(fleet, browser):
    """A clip on alpha, found by the page's search; Play starts it on alpha's own player (real mpv:
    with no display here it plays without a window) and the page follows the player's state."""
    from tests.media.clips import make_clip

    alpha, _beta, _gamma = fleet
    make_clip(alpha.state_dir / "media" / "Big.Buck.Bunny.2008.mkv", seconds=20)
    assert alpha.cli("library", "scan", "--json")["probed"] >= 1
    context, page, errors = watched_page(browser)
    try:
        page.goto(alpha.cli("dashboard", "--json")["url"])
        page.wait_for_selector("#fleet:not([hidden])", timeout=20_000)
        page.fill("#library-query", "bunny")
        page.click("#library-form button[type=submit]")
        row = page.locator("#library tbody tr", has_text="Big Buck Bunny")
        row.wait_for(timeout=10_000)
        assert page.locator("#library tbody tr").count() == 1
        row.locator("button.play").click()
        expect(row.locator("button.play")).to_have_text("Playing", timeout=20_000)
        wait_until(lambda: alpha.cli("player", "status", "--json")["state"] == "playing", 20, "alpha's player")
        expect(page.locator("#player-note")).to_have_attribute("data-state", "playing", timeout=10_000)
        expect(page.locator("#player-note")).to_contain_text("Big Buck Bunny")
        shot(page, "5-library-playing")
        alpha.cli("player", "stop", "--json")
        expect(page.locator("#player-note")).to_have_attribute("data-state", "idle", timeout=10_000)
        assert errors == [], errors
    finally:
        context.close()
