"""The page in a real headless Chromium: upload a dev photo through the file input, read the answer.

Needs Debian's `chromium` at /usr/bin/chromium (Playwright drives it; its own browser download is
never used). Screenshots land in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from deploy.browser import ANSWER_TIMEOUT_MS, CHROMIUM, DESKTOP, launch, upload_and_read_verdict
from tests.support import IN_CI, REPO_ROOT, free_port, landmark_names
from tests.web.helpers import APP, ARTIFACTS, dev_query

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} not found: apt-get install -y chromium"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def web_url(api_server) -> Iterator[str]:
    """`streamlit run web/app.py` as a real process, talking to the real API."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "web-streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LANDMARKS_API_URL": api_server.url},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "streamlit exited; see test-artifacts/web-streamlit.log"
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "streamlit did not start in 60 s"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def screenshot_whole_page(page, path) -> None:
    """Streamlit scrolls inside its main container, so a 'full page' shot would stop at the
    viewport: grow the viewport to the content's height first."""
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain]')].map(e => e.scrollHeight))"
    )
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": max(height, 600)})
    page.wait_for_timeout(500)  # let the grid reflow and the map redraw at the new size
    page.screenshot(path=str(path), full_page=True)


@pytest.mark.parametrize(
    ("viewport", "shot"), [(DESKTOP, "web-search.png"), (PHONE, "web-search-phone.png")], ids=["desktop", "phone"]
)
def test_upload_in_a_browser_shows_the_landmark_and_matches(chromium_path, web_url, viewport, shot):
    from playwright.sync_api import expect, sync_playwright

    path, landmark_id = dev_query()
    name = landmark_names()[landmark_id]
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=viewport)
            upload_and_read_verdict(page, web_url, path, name)
            expect(page.locator(".st-key-match-grid")).to_contain_text(f"1. {name}")
            assert not page.locator('[data-testid="stAlertContentError"]').count()

            # The landmark list (first cell: the best landmark) and the map have drawn.
            table = page.get_by_test_id("stDataFrame")
            expect(table.get_by_test_id("glide-cell-0-0")).to_have_text(name, timeout=ANSWER_TIMEOUT_MS)
            expect(page.locator('[data-testid="stDeckGlJsonChart"] #deckgl-overlay')).to_be_attached()

            # Nothing may be cut off sideways on a phone.
            overflow = page.evaluate(
                "() => document.querySelector('[data-testid=stMain]').scrollWidth"
                " - document.querySelector('[data-testid=stMain]').clientWidth"
            )
            assert overflow <= 1
            screenshot_whole_page(page, ARTIFACTS / shot)
        finally:
            browser.close()
