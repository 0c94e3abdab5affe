"""The page in a real headless Chromium: upload a dev photo through the file input, read the answer.

Needs Debian's `chromium` at /usr/bin/chromium (Playwright drives it; its own browser download is
never used). Screenshots land in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client import LandmarksClient
from deploy.browser import (
    ANSWER_TIMEOUT_MS,
    CHROMIUM,
    DESKTOP,
    MATCHES_SHOWN,
    launch,
    upload_and_read_verdict,
    upload_photo,
    wait_for_match_photos,
    wait_for_verdict,
)
from tests.support import IN_CI, REPO_ROOT, dev_protocol, free_port, landmark_names
from tests.web.helpers import API_KEY, APP, ARTIFACTS, UPLOAD_LANDMARK, dev_query, refused_distractor

PHONE = {"width": 390, "height": 844}
# Added through the page by the desktop visit: a photo of no landmark (far past the distractors
# `refused_distractor` tries), so that the dev queries' answers stay as they were.
ADDED_NAME, ADDED_ID = "Tab Key Check", "tab_key_check"


def added_photo() -> Path:
    return dev_protocol().distractors[-1]


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} not found: apt-get install -y chromium"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@contextlib.contextmanager
def streamlit_page(api_url: str, photo_boxes: bool, log_name: str) -> Iterator[str]:
    """`streamlit run web/app.py` as a real process, talking to the real API at API_URL; PHOTO_BOXES:
    whether it looks for boxes in the visitor's photo after the answer (WEB_PHOTO_BOXES)."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / log_name).open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
        ],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LANDMARKS_API_URL": api_url, "WEB_PHOTO_BOXES": "1" if photo_boxes else "0"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"streamlit exited; see test-artifacts/{log_name}"
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


@pytest.fixture(scope="module")
def web_url(write_api) -> Iterator[str]:
    """The page over the write-enabled API (for the Add landmark visit; the admin tests leave the dev
    queries' answers alone), without the photo's boxes: only their own test pays for that search."""
    with streamlit_page(write_api.url, photo_boxes=False, log_name="web-streamlit.log") as url:
        yield url


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


def check_landmark_page(page, name: str) -> None:
    """What every viewport must show once the verdict is there: grid, table, map, no overflow."""
    from playwright.sync_api import expect

    expect(page.locator(".st-key-match-grid")).to_contain_text(f"1. {name}")
    assert not page.locator('[data-testid="stAlertContentError"]').count()
    # The landmark list (first cell: the answer) and the map have drawn.
    table = page.get_by_test_id("stDataFrame")
    expect(table.get_by_test_id("glide-cell-0-0")).to_have_text(name, timeout=ANSWER_TIMEOUT_MS)
    # The runner-up's confidence beside its name (the API's share for it), not a dash.
    expect(table.get_by_test_id("glide-cell-1-1")).to_have_text(re.compile(r"^(under 1|\d{1,2})%$"))
    expect(page.locator('[data-testid="stDeckGlJsonChart"] #deckgl-overlay')).to_be_attached()
    # Nothing may be cut off sideways on a phone.
    overflow = page.evaluate(
        "() => document.querySelector('[data-testid=stMain]').scrollWidth"
        " - document.querySelector('[data-testid=stMain]').clientWidth"
    )
    assert overflow <= 1


@contextlib.contextmanager
def answered_page(web_url: str, viewport: dict, landmark_id: str = UPLOAD_LANDMARK) -> Iterator:
    """A browser page on which a dev query photo of LANDMARK_ID has been searched and its answer checked."""
    from playwright.sync_api import sync_playwright

    path, landmark_id = dev_query(landmark_id)
    name = landmark_names()[landmark_id]
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=viewport)
            upload_and_read_verdict(page, web_url, path, name)
            check_landmark_page(page, name)
            yield page
        finally:
            browser.close()


def test_search_refusal_and_add_landmark_in_a_browser(chromium_path, web_url, write_api):
    """One desktop visit the way a person makes it: a landmark, then a photo of no landmark, then
    the operator adds a landmark, typing the key and pressing Tab before submitting."""
    from playwright.sync_api import expect, sync_playwright

    path, landmark_id = dev_query()
    name = landmark_names()[landmark_id]
    distractor = refused_distractor(write_api.url)  # also warms the API up before the timing
    with LandmarksClient(write_api.url) as client:
        known = client.landmark(landmark_id)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=DESKTOP)
            page.goto(web_url)
            page.locator('input[type="file"]').wait_for(state="attached")
            # Measured, not asserted: upload to the verdict on screen, and to every match photo.
            start = time.monotonic()
            upload_photo(page, path)
            verdict = wait_for_verdict(page, name)
            to_verdict = time.monotonic() - start
            wait_for_match_photos(page)
            to_photos = time.monotonic() - start
            timing = (
                f"upload to verdict on screen: {to_verdict:.2f} s; "
                f"to all {MATCHES_SHOWN} match photos decoded: {to_photos:.2f} s\n"
            )
            print(timing, end="")
            (ARTIFACTS / "web-timing.txt").write_text(timing)

            # One number: the confidence as a percent never rounded up to 100%.
            expect(verdict.get_by_test_id("stProgress")).to_have_text(re.compile(r"^Confidence (over 99|\d{1,2})%$"))
            # The place line works without map tiles: place, coordinates and a link to a map.
            coordinates = f"{known.lat:.2f}, {known.lon:.2f}"
            expect(verdict).to_contain_text(f"{known.place} · {coordinates}")
            link = verdict.get_by_role("link", name="Open in OpenStreetMap")
            lat, lon = f"{known.lat:.5f}", f"{known.lon:.5f}"
            expect(link).to_have_attribute(
                "href", f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=16/{lat}/{lon}"
            )
            check_landmark_page(page, name)
            screenshot_whole_page(page, ARTIFACTS / "web-search.png")

            # A refusal: no verdict card naming a landmark, no map pin; the photos are not a match.
            page.set_viewport_size(DESKTOP)
            upload_photo(page, distractor)
            expect(page.locator(".st-key-refusal")).to_contain_text(
                "This doesn't look like a landmark.", timeout=ANSWER_TIMEOUT_MS
            )
            expect(page.get_by_role("heading", name="Closest gallery photos, not a match")).to_be_visible()
            expect(page.locator(".st-key-verdict")).to_have_count(0)
            expect(page.get_by_test_id("stDeckGlJsonChart")).to_have_count(0)
            expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
            wait_for_match_photos(page)
            screenshot_whole_page(page, ARTIFACTS / "web-refusal.png")

            # The gallery card of the landmark opens its own view: place line, map, its photos.
            page.set_viewport_size(DESKTOP)
            page.get_by_role("link", name="Gallery").click()
            page.locator(f".st-key-open-{landmark_id} button").click()
            expect(page.get_by_role("heading", name=name)).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
            expect(page.get_by_role("link", name="Open in OpenStreetMap")).to_be_visible()
            expect(page.get_by_role("heading", name=f"{known.image_count} photos")).to_be_visible()
            expect(page.locator(".st-key-landmark-grid img")).to_have_count(min(known.image_count, 24))
            screenshot_whole_page(page, ARTIFACTS / "web-landmark.png")

            # Add landmark: the key typed, then Tab (focus moves to "Show password"), then submit.
            page.set_viewport_size(DESKTOP)
            page.get_by_role("link", name="Add landmark").click()
            name_field = page.get_by_role("textbox", name="Name")
            name_field.fill(ADDED_NAME)
            name_field.press("Tab")
            upload_photo(page, added_photo())
            expect(page.get_by_role("button", name=f"Remove {added_photo().name}")).to_be_visible()
            key = page.get_by_role("textbox", name="API key")
            key.click()
            key.press_sequentially(API_KEY)
            key.press("Tab")
            page.get_by_role("button", name="Add landmark").click()
            expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text(
                f"{ADDED_NAME} ({ADDED_ID}) is now in the gallery: 1 photo added.", timeout=ANSWER_TIMEOUT_MS
            )
            assert not page.get_by_test_id("stAlertContentError").count()
            screenshot_whole_page(page, ARTIFACTS / "web-add-landmark.png")
        finally:
            browser.close()
    with LandmarksClient(write_api.url) as client:
        assert client.landmark(ADDED_ID).image_count == 1  # the write reached the API with the key


def test_upload_on_a_phone_shows_the_landmark_and_matches(chromium_path, web_url, tmp_path):
    from playwright.sync_api import expect

    with answered_page(web_url, PHONE) as page:
        screenshot_whole_page(page, ARTIFACTS / "web-search-phone.png")

        # A file that is no photo gets a sentence saying why, not a red icon with the reason in a tooltip.
        notes = tmp_path / "notes.txt"
        notes.write_text("a shopping list, not a photo")
        upload_photo(page, notes)
        expect(page.get_by_test_id("stAlertContentError")).to_contain_text(
            "This file is not an image. Please send a JPEG, PNG or WebP photo.", timeout=ANSWER_TIMEOUT_MS
        )
        expect(page.locator(".st-key-verdict")).to_have_count(0)
        screenshot_whole_page(page, ARTIFACTS / "web-not-an-image.png")


def test_landmarks_that_stand_together_are_labelled_on_the_map(chromium_path, web_url):
    """Qutb Minar, the Iron Pillar and Alai Darwaza stand within 20 m: their labels go to free sides of
    their dots (web.components.place_labels; geometry in test_components.py). Screenshot for a person."""
    with answered_page(web_url, DESKTOP, "qutub_minar") as page:
        chart = page.get_by_test_id("stDeckGlJsonChart")
        chart.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)  # deck.gl draws its text layer after the chart is attached
        chart.screenshot(path=ARTIFACTS / "web-map-nearby.png")


def test_two_landmarks_in_one_photo_are_boxed_on_the_visitors_photo(chromium_path, write_api, tmp_path):
    """Taj Mahal and India Gate side by side: after the verdict, the visitor's photo comes back with a box
    on each, named, and the caption names the other landmark found (POST /search?box=true&detect=all)."""
    from playwright.sync_api import expect, sync_playwright

    from bench.common import side_by_side

    names = landmark_names()
    photo = tmp_path / "two-landmarks.jpg"
    photo.write_bytes(side_by_side(dev_query("taj_mahal")[0], dev_query("india_gate")[0]))
    with (
        streamlit_page(write_api.url, photo_boxes=True, log_name="web-streamlit-boxes.log") as web_url,
        sync_playwright() as playwright,
    ):
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=DESKTOP)
            page.goto(web_url)
            upload_photo(page, photo)
            heading = page.locator(".st-key-verdict").get_by_role("heading")
            pair = {names["taj_mahal"], names["india_gate"]}
            expect(heading).to_have_text(re.compile("|".join(map(re.escape, pair))), timeout=ANSWER_TIMEOUT_MS)
            [other] = pair - {heading.inner_text()}
            caption = rf"Your photo: {re.escape(heading.inner_text())} is in the frame; also in it: "
            caption += rf"{re.escape(other)} \((under 1|\d{{1,2}})%\)"
            expect(page.get_by_text(re.compile(caption))).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
            screenshot_whole_page(page, ARTIFACTS / "web-boxes.png")
        finally:
            browser.close()


def test_a_russian_visitor_sees_the_russian_names_the_gallery_has(chromium_path, web_url, write_api):
    """name_ru / city_ru metadata (POST /landmarks fields here, landmarks.csv columns alike) shown to a
    browser in Russian, on the gallery card and the landmark's own view."""
    from playwright.sync_api import expect, sync_playwright

    body = {
        "landmark_id": "ru_names_check",
        "name": "Names Check",
        "city": "Moscow",
        "country": "Russia",
        "lat": 55.7539,
        "lon": 37.6208,
        "name_ru": "Проверка имён",
        "city_ru": "Москва",
    }
    headers = {"X-API-Key": API_KEY}
    created = httpx.post(f"{write_api.url}/landmarks", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    photo = dev_protocol().distractors[-2]
    added = httpx.post(
        f"{write_api.url}/landmarks/ru_names_check/images",
        files=[("images", (photo.name, photo.read_bytes(), "image/jpeg"))],
        headers=headers,
        timeout=60,
    )
    assert added.status_code == 201, added.text
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=DESKTOP, locale="ru-RU")
            page.goto(f"{web_url}/gallery")
            search = page.get_by_placeholder("Search by name, e.g. taj")
            search.fill("names")
            search.press("Enter")
            card = page.locator(".st-key-landmark-grid")
            expect(card).to_contain_text("Проверка имён", timeout=ANSWER_TIMEOUT_MS)
            expect(card).to_contain_text("Москва, Russia")
            # While the search reruns the page, the card of the page before can stand beside the new one.
            open_button = page.locator(".st-key-open-ru_names_check button")
            expect(open_button).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
            open_button.click()
            expect(page.get_by_role("heading", name="Проверка имён")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
            expect(page.get_by_text("Москва, Russia · 55.75, 37.62")).to_be_visible()
            screenshot_whole_page(page, ARTIFACTS / "web-landmark-ru.png")
        finally:
            browser.close()
