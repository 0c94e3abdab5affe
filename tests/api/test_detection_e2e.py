"""`POST /search?detect=all` over HTTP: every landmark a photo shows, each with its region."""

from __future__ import annotations

import httpx

from bench.common import side_by_side
from tests.support import dev_protocol

# Two landmarks the default model names with a wide margin from their first protocol query.
LEFT, RIGHT = "taj_mahal", "india_gate"


def first_query(landmark_id: str):
    return next(path for path, label in dev_protocol().queries if label == landmark_id)


def search(url: str, data: bytes, **params) -> httpx.Response:
    return httpx.post(
        f"{url}/search", params={"k": 3, **params}, files={"image": ("photo.jpg", data, "image/jpeg")}, timeout=120
    )


def test_two_landmarks_side_by_side_are_both_found_where_they_are(api_server):
    answer = search(api_server.url, side_by_side(first_query(LEFT), first_query(RIGHT)), detect="all")
    assert answer.status_code == 200, answer.text
    found = {d["landmark_id"]: d for d in answer.json()["detections"]}
    assert {LEFT, RIGHT} <= set(found), found
    left, right = found[LEFT]["box"], found[RIGHT]["box"]
    assert (left[0] + left[2]) / 2 < 0.5 < (right[0] + right[2]) / 2  # each on its own side
    assert all(0.5 <= d["confidence"] <= 1 for d in found.values())


def test_one_landmark_keeps_its_answer_and_leads_the_detections(api_server):
    data = first_query(LEFT).read_bytes()
    best = search(api_server.url, data).json()
    every = search(api_server.url, data, detect="all").json()
    assert best["detections"] is None  # only when asked for
    assert every["landmark"] == best["landmark"] and every["landmarks"] == best["landmarks"]
    assert every["detections"][0]["landmark_id"] == LEFT


def test_a_photo_of_no_landmark_has_no_detections(api_server):
    # Its regions are refused as photos are (the prior's gate, the threshold), and one stray crop is chance.
    # bench/detection.py: none of the 47 dev distractors has a detection; one here, for the time.
    distractor = dev_protocol().distractors[0]
    answer = search(api_server.url, distractor.read_bytes(), detect="all").json()
    assert answer["landmark"] is None and answer["detections"] == [], answer["detections"]


def test_an_unknown_detect_value_is_a_clear_422(api_server):
    answer = search(api_server.url, first_query(LEFT).read_bytes(), detect="everything")
    assert answer.status_code == 422 and "detect" in answer.text
