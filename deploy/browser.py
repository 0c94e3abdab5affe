"""The web page in a real headless Chromium (Debian's, driven by Playwright; no browser download).

Shared by the browser tests (tests/web/test_web_browser.py) and the deploy check, which searches from
the web container's page the way a person does: upload a photo, wait for the verdict and the grid.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 900}
ANSWER_TIMEOUT_MS = 60_000
MATCHES_SHOWN = 8  # the page's "Matches to show" default (web/views/search.py)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def upload_and_read_verdict(page, url: str, photo: Path, name: str, timeout_ms: int = ANSWER_TIMEOUT_MS):
    """Opens the page, uploads `photo` through the file input and waits until the verdict names
    `name` and the grid's MATCHES_SHOWN match photos have all arrived and decoded; returns them."""
    page.goto(url)
    upload_photo(page, photo)
    wait_for_verdict(page, name, timeout_ms)
    return wait_for_match_photos(page, timeout_ms)


def upload_photo(page, photo: Path) -> None:
    """Puts `photo` in the page's file input, replacing the one there (on Search: the search starts)."""
    page.locator('input[type="file"]').set_input_files(str(photo))


def wait_for_verdict(page, name: str, timeout_ms: int = ANSWER_TIMEOUT_MS):
    """Waits until the verdict card names `name` with its confidence; returns the card."""
    from playwright.sync_api import expect

    verdict = page.locator(".st-key-verdict")
    expect(verdict.get_by_role("heading", name=name)).to_be_visible(timeout=timeout_ms)
    expect(verdict).to_contain_text("Confidence")
    return verdict


def wait_for_match_photos(page, timeout_ms: int = ANSWER_TIMEOUT_MS):
    """Waits until the grid's MATCHES_SHOWN photos have all arrived and decoded; returns them."""
    from playwright.sync_api import expect

    photos = page.locator(".st-key-match-grid img")
    expect(photos).to_have_count(MATCHES_SHOWN, timeout=timeout_ms)
    # Each match photo is fetched server-side from the API: it must really arrive and decode.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.st-key-match-grid img')]"
        ".every(img => img.complete && img.naturalWidth > 0)",
        timeout=timeout_ms,
    )
    return photos
