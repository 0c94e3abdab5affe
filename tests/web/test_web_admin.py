"""The Add landmark page and the client's write methods, against a real API that accepts writes
(`write_api`, tests/web/conftest.py: a copy of the dev index, with a key and a 1 MiB upload limit).
The browser tests search the same API afterwards: what these tests add must leave the dev queries'
answers as they were (no query photo goes into the gallery).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from client import ApiClientError, Landmark, LandmarksClient, Photo, SearchRequest, photo_batches
from tests.support import dev_protocol, landmark_names
from tests.web.helpers import API_KEY, APP, UPLOAD_LIMIT, closed_port_url, dev_query
from web.components import admin_error_message

WRONG_KEY = "not-the-operators-key"
# Deleted, then added back through the page with its gallery photos; the held-out query photo the
# model matches to it (all top 8) when it is in the gallery, and to Iron Pillar when it is not.
READDED = "qutub_minar"
RUN_TIMEOUT_S = 120


def gallery_photos(landmark_id: str) -> list[Path]:
    return [path for path, lid in dev_protocol().gallery if lid == landmark_id]


def noise_png(min_bytes: int) -> bytes:
    """A real PNG that random pixels keep from compressing below `min_bytes`."""
    side = int((min_bytes / 3) ** 0.5) + 16
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG")
    assert len(out.getvalue()) > min_bytes
    return out.getvalue()


def open_add_page(monkeypatch: pytest.MonkeyPatch, api_url: str) -> AppTest:
    monkeypatch.setenv("LANDMARKS_API_URL", api_url)
    app = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S).run()
    app.switch_page("views/add_landmark.py").run()
    assert not app.exception, app.exception
    return app


def widget(widgets, label: str):
    return next(item for item in widgets if item.label == label)


def fill(app: AppTest, key: str, name: str, photos: list[tuple[str, bytes, str]], **fields) -> AppTest:
    """Type into the form the way a person would; `fields` by label ('Landmark id', 'City', ...).
    The key last, and not sent yet: it shares an `st.form` with the submit button, so it reaches the
    page with the click (`submit`), as in a browser."""
    widget(app.text_input, "Name").input(name)
    for label, value in fields.items():
        kind = app.number_input if isinstance(value, float) else app.text_input
        widget(kind, label).set_value(value)
    app.file_uploader[0].set_value(photos)
    app.run()
    assert not app.exception, app.exception
    widget(app.text_input, "API key").input(key)
    return app


def submit(app: AppTest) -> AppTest:
    app.button(key="add-submit").click().run()
    assert not app.exception, app.exception
    return app


def as_upload(path: Path) -> tuple[str, bytes, str]:
    return path.name, path.read_bytes(), "image/jpeg"


def shown_text(app: AppTest) -> str:
    kinds = ("error", "warning", "success", "info", "markdown", "caption")
    return "\n".join(element.value for kind in kinds for element in getattr(app, kind))


def test_added_landmark_is_found_by_search_and_in_the_gallery(monkeypatch, write_api):
    client = LandmarksClient(write_api.url)
    name = landmark_names()[READDED]
    photos = gallery_photos(READDED)
    query, _ = dev_query(READDED)
    assert client.delete_landmark(API_KEY, READDED).removed_images == len(photos)
    before = client.search(SearchRequest(Photo(query.name, query.read_bytes(), "image/jpeg"), k=8))
    assert READDED not in {match.landmark_id for match in before.matches}

    app = open_add_page(monkeypatch, write_api.url)
    widget(app.text_input, "Name").input(name).run()
    assert f"Id from the name: `{name.lower().replace(' ', '_')}`" in shown_text(app)
    # An unreadable file among the photos (refused by the API inside a 201) and one over the
    # server's upload limit (413 on its own): both are reported, the rest still go in.
    uploads = [
        ("notes.jpg", b"a shopping list, not a photo", "image/jpeg"),
        *map(as_upload, photos),
        ("huge.png", noise_png(UPLOAD_LIMIT), "image/png"),
    ]
    fill(
        app,
        API_KEY,
        name,
        uploads,
        **{
            "Landmark id": READDED,
            "City": "Delhi",
            "Country": "India",
            "Latitude (optional)": 28.5245,
            "Longitude (optional)": 77.1855,
        },
    )
    submit(app)

    assert not app.error
    assert [s.value for s in app.success] == [
        f"**{name}** (`{READDED}`) is now in the gallery: {len(photos)} of {len(uploads)} photos added."
    ]
    rejected = app.warning[0].value
    assert rejected.startswith("2 photos not added")
    assert "`notes.jpg`: " in rejected and "not an image" in rejected
    assert "`huge.png`: The upload is larger than the 1 MB limit." in rejected
    # The form is ready for the next landmark; the key stays for the session.
    assert widget(app.text_input, "Name").value == "" and not app.file_uploader[0].value
    assert widget(app.text_input, "API key").value == API_KEY

    stored = client.landmark(READDED)
    assert (stored.name, stored.place, stored.image_count) == (name, "Delhi, India", len(photos))
    assert (stored.lat, stored.lon) == pytest.approx((28.5245, 77.1855))

    app.switch_page("views/search.py").run()
    app.file_uploader[0].set_value(as_upload(query)).run()
    assert not app.exception and not app.error
    assert [header.value for header in app.header] == [name]

    app.switch_page("views/gallery.py").run()
    app.text_input[0].input(name).run()
    assert [card.value for card in app.markdown] == [f"**{name}**"]
    assert f"Delhi, India · {len(photos)} photos" in shown_text(app)

    # The key outlives the visit to other pages (Streamlit drops unrendered widgets' state).
    app.switch_page("views/add_landmark.py").run()
    assert widget(app.text_input, "API key").value == API_KEY


def test_wrong_or_missing_key_is_explained_and_changes_nothing(monkeypatch, write_api):
    client = LandmarksClient(write_api.url)
    health = client.health()
    photo = as_upload(gallery_photos("taj_mahal")[0])
    app = fill(open_add_page(monkeypatch, write_api.url), "", "Big Ben", [photo])

    submit(app)
    assert [e.value for e in app.error] == ["- Enter the API key (the server's LANDMARKS_API_KEY)."]

    widget(app.text_input, "API key").input(WRONG_KEY)
    submit(app)
    assert len(app.error) == 1
    assert "API key is wrong" in app.error[0].value
    assert "The API key is not valid." in app.error[0].value  # the API's own sentence
    assert not app.success
    assert WRONG_KEY not in shown_text(app)
    assert widget(app.text_input, "Name").value == "Big Ben"  # kept, to retry with the right key

    with pytest.raises(ApiClientError) as missing:
        client.landmark("big_ben")
    assert missing.value.status == 404
    after = client.health()
    assert (after.gallery_size, after.landmark_count) == (health.gallery_size, health.landmark_count)


def test_existing_id_offers_to_add_the_photos_to_it(monkeypatch, write_api):
    client = LandmarksClient(write_api.url)
    existing = client.landmark("taj_mahal")
    # Its last query photo: the browser tests search this API with the first one afterwards.
    photo = as_upload([path for path, lid in dev_protocol().queries if lid == "taj_mahal"][-1])
    app = fill(open_add_page(monkeypatch, write_api.url), API_KEY, "My Taj", [photo], **{"Landmark id": "taj_mahal"})

    submit(app)
    assert not app.error and not app.success
    offer = app.warning[0].value
    assert f"**{existing.name}** ({existing.place}, {existing.image_count} photos)" in offer
    assert "Nothing was changed" in offer
    assert client.landmark("taj_mahal") == existing

    app.button(key="add-to-existing").click().run()
    assert not app.exception and not app.error
    assert [s.value for s in app.success] == [f"**{existing.name}** (`taj_mahal`) has new photos: 1 photo added."]
    now = client.landmark("taj_mahal")
    assert (now.name, now.image_count) == (existing.name, existing.image_count + 1)
    assert not app.warning  # the offer is gone once used


def test_details_are_checked_before_anything_is_sent(monkeypatch):
    # Nothing listens at this address: an attempt to send would show "not answering".
    app = open_add_page(monkeypatch, closed_port_url())
    fill(app, API_KEY, "Big Ben", [], **{"Landmark id": "big ben!", "Latitude (optional)": 51.5})
    submit(app)
    assert len(app.error) == 1
    problems = app.error[0].value
    assert "“big ben!” cannot be a landmark id" in problems
    assert "both the latitude and the longitude" in problems
    assert "at least one photo" in problems
    assert "not answering" not in problems


def test_api_down_is_explained(monkeypatch):
    url = closed_port_url()
    app = open_add_page(monkeypatch, url)
    fill(app, API_KEY, "Big Ben", [as_upload(gallery_photos("taj_mahal")[0])])
    submit(app)
    assert len(app.error) == 1
    assert "The search service is not answering" in app.error[0].value
    assert url not in app.error[0].value  # the address is for the operator's log
    assert not app.success


def test_client_write_errors_map_to_clear_messages(write_api):
    client = LandmarksClient(write_api.url)
    photo = Photo("x.jpg", gallery_photos("taj_mahal")[0].read_bytes(), "image/jpeg")
    cases = [
        (lambda: client.create_landmark("", Landmark("big_ben", "Big Ben")), 401, "needs the operator's API key"),
        (lambda: client.delete_landmark(WRONG_KEY, "taj_mahal"), 403, "API key is wrong"),
        (lambda: client.add_photos(API_KEY, "no_such_place", [photo]), 404, "not in the gallery"),
        (lambda: client.create_landmark(API_KEY, Landmark("taj_mahal", "Taj Mahal")), 409, "refused"),
    ]
    for call, status, sentence in cases:
        with pytest.raises(ApiClientError) as caught:
            call()
        assert caught.value.status == status
        message = admin_error_message(caught.value, write_api.url)
        assert sentence in message and caught.value.detail in message
    assert client.landmark("taj_mahal").name == landmark_names()["taj_mahal"]


def test_client_adds_and_deletes_one_photo(write_api):
    client = LandmarksClient(write_api.url)
    count = client.landmark("india_gate").image_count
    path, _ = dev_query("india_gate")
    added = client.add_photos(API_KEY, "india_gate", [Photo(path.name, path.read_bytes(), "image/jpeg")])
    assert len(added.added) == 1 and not added.rejected
    assert client.landmark("india_gate").image_count == count + 1
    assert client.image(added.added[0].image_url, 64)[:3] == b"\xff\xd8\xff"

    deleted = client.delete_photo(API_KEY, added.added[0].image_id)
    assert deleted.removed_images == 1
    assert client.landmark("india_gate").image_count == count

    # Alone, an unusable photo makes the API answer 400; the batch upload reports it as rejected
    # with the reason for that file instead of failing.
    answers = list(client.add_photos_in_batches(API_KEY, "india_gate", [Photo("notes.txt", b"text")]))
    assert len(answers) == 1 and not answers[0].added
    [rejected] = answers[0].rejected
    assert rejected.filename == "notes.txt"
    assert rejected.detail and not rejected.detail.startswith("None of the photos")


def test_photo_batches_respect_count_and_size():
    photos = [Photo(f"{n}.jpg", b"x" * size) for n, size in enumerate([5, 5, 5, 20, 1, 1, 1])]
    batches = photo_batches(photos, max_count=3, max_bytes=10)
    assert [[p.filename for p in batch] for batch in batches] == [
        ["0.jpg", "1.jpg"],
        ["2.jpg"],
        ["3.jpg"],
        ["4.jpg", "5.jpg", "6.jpg"],
    ]
    assert [photo for batch in batches for photo in batch] == photos
