"""The Streamlit pages, driven by AppTest through their real widgets, against the real API."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support import ApiServer, landmark_names, run_cli
from tests.web.helpers import APP, CAMERA_LANDMARK, closed_port_url, dev_query, refused_distractor

# The first search makes the API load the model's kernels; later ones take well under a second.
RUN_TIMEOUT_S = 60
DEFAULT_K = 8


def open_app(monkeypatch: pytest.MonkeyPatch, api_url: str, page: str | None = None) -> AppTest:
    monkeypatch.setenv("LANDMARKS_API_URL", api_url)
    app = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S).run()
    if page is not None:
        app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def upload(app: AppTest, path: Path, mime_type: str = "image/jpeg") -> AppTest:
    app.file_uploader[0].set_value((path.name, path.read_bytes(), mime_type)).run()
    assert not app.exception, app.exception
    return app


def match_captions(app: AppTest) -> list[str]:
    """Captions of the top-k grid, in order (the query photo is captioned 'Your photo')."""
    return [caption for image in app.image for caption in image.captions if caption != "Your photo"]


def test_uploaded_photo_gets_its_landmark_and_matches(monkeypatch, api_server):
    path, landmark_id = dev_query()
    name = landmark_names()[landmark_id]
    app = upload(open_app(monkeypatch, api_server.url), path)

    assert not app.error
    assert [header.value for header in app.header] == [name]
    [bar] = app.get("progress")
    assert re.fullmatch(r"Confidence (over 99|\d{1,2})%", bar.proto.text), bar.proto.text  # never "100%"
    captions = match_captions(app)
    assert len(captions) == DEFAULT_K
    assert captions[0] == f"1. {name}"  # the photos' similarities stay out of the way
    # Every landmark with its confidence, the answer's that of the verdict, the runner-ups' smaller and
    # never adding up to more than the answer leaves.
    table = app.dataframe[0].value
    assert table["Landmark"].iloc[0] == name
    assert table["Confidence"].iloc[0] == bar.proto.text.removeprefix("Confidence ")
    runner_ups = list(table["Confidence"].iloc[1:])
    assert runner_ups and all(re.fullmatch(r"under 1%|\d{1,2}%", shown) for shown in runner_ups), runner_ups
    answer = 100 if table["Confidence"].iloc[0] == "over 99%" else int(table["Confidence"].iloc[0][:-1])
    assert sum(int(shown[:-1]) for shown in runner_ups if shown != "under 1%") <= 100 - answer
    assert len(app.get("deck_gl_json_chart")) == 1  # the map: the answer and its runner-ups


def test_top_k_control_changes_the_number_of_matches(monkeypatch, api_server):
    path, _ = dev_query()
    app = open_app(monkeypatch, api_server.url)
    app.slider[0].set_value(3).run()
    upload(app, path)
    assert len(match_captions(app)) == 3


def test_camera_photo_gets_its_landmark(monkeypatch, api_server):
    path, landmark_id = dev_query(CAMERA_LANDMARK)
    app = open_app(monkeypatch, api_server.url)
    app.segmented_control[0].set_value("Take a photo").run()
    assert not app.file_uploader  # one input at a time: the camera is asked for only when chosen
    app.camera_input[0].set_value(("camera.jpg", path.read_bytes(), "image/jpeg")).run()
    assert not app.exception and not app.error
    assert [header.value for header in app.header] == [landmark_names()[landmark_id]]


def test_a_photo_with_gps_says_how_far_it_was_taken_from_the_landmark(monkeypatch, api_server):
    from landmarks.gallery import scan_gallery
    from tests.support import require_dev_data, with_gps

    path, landmark_id = dev_query()
    landmark = scan_gallery(require_dev_data() / "images").landmarks[landmark_id]
    data = with_gps(path, (landmark.lat + 0.002, landmark.lon))  # ~220 m north
    app = open_app(monkeypatch, api_server.url)
    app.file_uploader[0].set_value((path.name, data, "image/jpeg")).run()
    assert not app.exception and not app.error
    assert [header.value for header in app.header] == [landmark_names()[landmark_id]]
    captions = [caption.value for caption in app.caption]
    assert ":material/my_location: Your photo was taken 220 m from it." in captions, captions


def test_distractor_is_not_a_landmark(monkeypatch, api_server):
    app = upload(open_app(monkeypatch, api_server.url), refused_distractor(api_server.url))
    assert not app.header  # no landmark named as the answer
    assert [warning.value for warning in app.warning] == ["This doesn't look like a landmark."]
    closest = " ".join(markdown.value for markdown in app.markdown)
    assert "closest landmarks" in closest
    assert any(name in closest for name in landmark_names().values())
    assert len(match_captions(app)) == DEFAULT_K
    assert "Closest gallery photos, not a match" in [subheader.value for subheader in app.subheader]
    assert not app.get("deck_gl_json_chart") and not app.dataframe  # no pins, no candidate list


def test_stopped_api_shows_a_clear_error(monkeypatch):
    url = closed_port_url()
    path, _ = dev_query()
    app = upload(open_app(monkeypatch, url), path)
    assert len(app.error) == 1
    assert app.error[0].value == "The search service is not answering; try again in a minute."
    assert not app.image and not app.header
    assert [button.label for button in app.button] == ["Try again"]  # the API may be back by then


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "This file is empty"),
        (b"these bytes are a shopping list, not a PNG", "not an image|could not be read as a photo"),
    ],
    ids=["empty", "not-an-image"],
)
def test_file_that_is_not_a_photo_is_explained(monkeypatch, api_server, tmp_path, content, expected):
    fake = tmp_path / "holiday.png"
    fake.write_bytes(content)
    app = upload(open_app(monkeypatch, api_server.url), fake, "image/png")
    assert len(app.error) == 1
    assert re.search(expected, app.error[0].value), app.error[0].value
    assert not app.image and not app.header
    assert "Try again" not in [button.label for button in app.button]  # the same file would fail again


def test_gallery_lists_landmarks_with_counts_and_filters(monkeypatch, api_server):
    names = landmark_names()
    app = open_app(monkeypatch, api_server.url, "views/gallery.py")
    assert not app.error
    cards = [markdown.value.strip("*") for markdown in app.markdown]
    assert sorted(cards) == sorted(names.values())
    assert len(app.image) == len(names)  # one sample photo per landmark
    assert any(caption.value.endswith(" photos") for caption in app.caption)
    # The model string is for the operator, in a collapsed expander.
    [operators] = app.expander
    assert operators.label == "For operators" and not operators.proto.expanded
    assert operators.caption[0].value.startswith("Model: ")

    path, landmark_id = dev_query()
    word = names[landmark_id].split()[0]
    app.text_input[0].input(word.lower()).run()
    cards = [markdown.value.strip("*") for markdown in app.markdown]
    assert names[landmark_id] in cards and len(cards) < len(names)
    assert all(word.lower() in card.lower() for card in cards)
    assert f"{len(cards)} of {len(names)} landmarks match" in " ".join(c.value for c in app.caption)


def test_a_landmark_opens_with_its_place_its_photos_and_those_left_out(monkeypatch, lite_index, tmp_path):
    from landmarks.index.gallery_index import STORE_FILE
    from landmarks.index.store import GalleryStore

    index = shutil.copytree(lite_index, tmp_path / "index")
    store = GalleryStore(index / STORE_FILE)
    landmark_id = sorted(store.image_counts())[0]
    photos = store.images_of(landmark_id)
    landmark = store.landmarks()[landmark_id]
    store.close()
    excluded = run_cli("index", "clean", str(index), "--exclude", str(photos[0].image_id))
    assert excluded.returncode == 0, excluded.stderr + excluded.stdout
    with ApiServer(index) as server:
        app = open_app(monkeypatch, server.url, "views/gallery.py")
        app.button(key=f"open-{landmark_id}").click().run()
        assert not app.exception and not app.error, app.exception or app.error
        assert landmark_id in app.query_params["landmark"]
        assert app.header[0].value == landmark.name
        place = " ".join(m.value for m in app.markdown)
        assert landmark.city in place and "Open in OpenStreetMap" in place
        assert app.subheader[0].value == f"{len(photos) - 1} photos"
        assert app.subheader[1].value == "Left out of matching"
        captions = [caption for image in app.image for caption in image.captions]
        assert captions.count(f"#{photos[0].image_id} · Excluded by an operator") == 1
        assert len(app.image) == len(photos)  # the matched photos and the one left out
        app.button(key="back-to-gallery").click().run()
        assert not app.header and "landmark" not in app.query_params
        assert app.text_input[0].placeholder.startswith("Search by name")  # the listing again


def test_empty_gallery_says_how_to_get_one(monkeypatch, empty_api_server):
    app = open_app(monkeypatch, empty_api_server.url, "views/gallery.py")
    assert "landmarks index build GALLERY_DIR --out data/index" in app.info[0].value
    assert "landmarks data gldv2" in app.info[0].value

    # The search page relays the API's notice instead of a verdict.
    app.switch_page("views/search.py").run()
    path, _ = dev_query()
    upload(app, path)
    assert not app.error and not app.header and not app.warning
    assert "landmarks index build" in app.info[0].value
