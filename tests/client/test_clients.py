"""Both clients against the real API over real HTTP with the dev photos and the real model; the
failures the real API cannot be made to produce on demand (a hang, a 5xx, a proxy's page, a
Retry-After) come from small local servers that speak real HTTP. Every test runs once per client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client import (
    MIN_IMAGE_SIZE,
    ApiClientError,
    ApiRejected,
    ApiServerError,
    ApiTimeout,
    ApiUnavailable,
    AsyncLandmarksClient,
    Landmark,
    Photo,
    SearchRequest,
)
from client.errors import UNREADABLE_ANSWER
from tests.client.conftest import API_KEY, RETRY_AFTER_S
from tests.support import dev_protocol, free_port, landmark_names

# The off-the-shelf model names this landmark for its first held-out query photo with a wide margin
# (all top 8 matches), so a wrong answer means the client, not the model, broke.
QUERY_LANDMARK = "taj_mahal"
JPEG_MAGIC = b"\xff\xd8\xff"


def held_out_query(landmark_id: str = QUERY_LANDMARK) -> Path:
    return next(path for path, lid in dev_protocol().queries if lid == landmark_id)


def gallery_photos(landmark_id: str) -> list[Path]:
    return [path for path, lid in dev_protocol().gallery if lid == landmark_id]


def test_search_names_the_landmark_of_a_held_out_photo(api_server, connect) -> None:
    api = connect(api_server.url)
    path = held_out_query()
    result = api.search(SearchRequest(Photo(path.name, path.read_bytes(), "image/jpeg"), k=4))
    assert result.landmark is not None and result.landmark.landmark_id == QUERY_LANDMARK
    assert result.landmark.name == landmark_names()[QUERY_LANDMARK]
    assert 0.0 < result.landmark.confidence <= 1.0
    assert len(result.matches) == 4 and result.matches[0].landmark_id == QUERY_LANDMARK
    assert result.gallery_size == len(dev_protocol().gallery)
    best = result.landmark_info(QUERY_LANDMARK)
    # The dev landmarks.csv gives every landmark a place and coordinates.
    assert best is not None and best.place and best.has_coordinates and best.score is not None
    assert api.image(result.matches[0].image_url, MIN_IMAGE_SIZE)[:3] == JPEG_MAGIC


def test_listing_detail_and_health_read_the_gallery(api_server, connect) -> None:
    api = connect(api_server.url)
    names = landmark_names()
    listing = api.landmarks()
    assert listing.total == len(listing.landmarks) == len(names)
    assert all(lm.sample_image_url and lm.image_count for lm in listing.landmarks)
    word = names[QUERY_LANDMARK].split()[0].lower()
    filtered = api.landmarks(word)
    assert QUERY_LANDMARK in {lm.landmark_id for lm in filtered.landmarks} and 0 < filtered.total < listing.total
    detail = api.landmark(QUERY_LANDMARK)
    assert (detail.name, detail.image_count) == (names[QUERY_LANDMARK], len(gallery_photos(QUERY_LANDMARK)))
    health = api.health()
    assert health.ready and health.gallery_size == len(dev_protocol().gallery)
    assert health.landmark_count == len(names) and health.model


def test_refused_requests_carry_the_servers_detail(api_server, connect) -> None:
    api = connect(api_server.url)
    with pytest.raises(ApiRejected) as not_an_image:
        api.search(SearchRequest(Photo("notes.txt", b"just some text, not a photo", "text/plain"), k=3))
    assert not_an_image.value.status in (400, 415) and not_an_image.value.detail
    path = held_out_query()
    with pytest.raises(ApiRejected) as bad_k:
        api.search(SearchRequest(Photo(path.name, path.read_bytes(), "image/jpeg"), k=0))
    # FastAPI's list-shaped 422 detail, read as its first message.
    assert bad_k.value.status == 422 and "greater than or equal to 1" in bad_k.value.detail
    with pytest.raises(ApiClientError) as unknown:
        api.landmark("no_such_place")
    assert unknown.value.status == 404 and not isinstance(unknown.value, ApiRejected)
    assert "no_such_place" in unknown.value.detail


def test_stopped_api_is_unavailable(connect) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ApiUnavailable) as caught:
        connect(url, timeout_s=5).health()
    assert url in str(caught.value)


def test_silent_api_times_out(silent_url, connect) -> None:
    with pytest.raises(ApiTimeout) as caught:
        connect(silent_url, timeout_s=0.5).health()
    assert "0.5 s" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "kind", "retry_after"),
    [(500, ApiServerError, None), (503, ApiServerError, RETRY_AFTER_S), (429, ApiClientError, RETRY_AFTER_S)],
)
def test_error_statuses_map_to_errors_with_detail_and_retry_after(scripted, connect, status, kind, retry_after):
    with pytest.raises(kind) as caught:
        connect(scripted.url).image(f"{scripted.url}/{status}", MIN_IMAGE_SIZE)
    assert type(caught.value) is kind
    assert (caught.value.status, caught.value.detail) == (status, f"Scripted failure {status}.")
    assert caught.value.retry_after == retry_after


def test_answers_that_are_not_the_documented_json_still_read(scripted, connect) -> None:
    api = connect(scripted.url)
    with pytest.raises(ApiServerError) as proxy_page:
        api.image(f"{scripted.url}/502?body=html", MIN_IMAGE_SIZE)
    assert (proxy_page.value.status, proxy_page.value.detail) == (502, "Bad Gateway")
    with pytest.raises(ApiServerError) as not_json:
        api.health()  # 200, but an HTML body
    assert (not_json.value.status, not_json.value.detail) == (200, UNREADABLE_ANSWER)


def test_gallery_changes_round_trip(write_api, connect) -> None:
    api = connect(write_api.url)
    landmark_id = f"client_test_{api.kind}"
    created = api.create_landmark(API_KEY, Landmark(landmark_id, "Client Test", city="Agra", lat=27.17, lon=78.04))
    assert (created.landmark_id, created.name, created.place) == (landmark_id, "Client Test", "Agra")
    assert (created.lat, created.lon) == (27.17, 78.04)
    photos = [Photo(path.name, path.read_bytes(), "image/jpeg") for path in gallery_photos(QUERY_LANDMARK)[:2]]
    added = api.add_photos(API_KEY, landmark_id, [*photos, Photo("notes.txt", b"not a photo", "text/plain")])
    assert len(added.added) == 2 and [r.filename for r in added.rejected] == ["notes.txt"]
    assert api.landmark(landmark_id).image_count == 2
    assert api.image(added.added[0].image_url, MIN_IMAGE_SIZE)[:3] == JPEG_MAGIC
    assert api.delete_photo(API_KEY, added.added[0].image_id).removed_images == 1
    assert api.delete_landmark(API_KEY, landmark_id).removed_images == 1
    with pytest.raises(ApiClientError) as gone:
        api.landmark(landmark_id)
    assert gone.value.status == 404


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        (lambda api: api.delete_landmark("wrong-key", QUERY_LANDMARK), 403, "not valid"),
        (lambda api: api.create_landmark(API_KEY, Landmark(QUERY_LANDMARK, "Again")), 409, "already exists"),
        (lambda api: api.add_photos(API_KEY, "no_such_place", [Photo("a.jpg", b"x")]), 404, "no_such_place"),
    ],
)
def test_refused_gallery_changes_carry_the_servers_detail(write_api, connect, change, status, words) -> None:
    with pytest.raises(ApiClientError) as caught:
        change(connect(write_api.url))
    assert caught.value.status == status and words in caught.value.detail


@pytest.mark.parametrize(("limit", "most_at_once"), [(2, 2), (None, 5)])
async def test_async_client_bounds_the_searches_in_flight(scripted, limit, most_at_once) -> None:
    async with AsyncLandmarksClient(scripted.url, max_concurrent_searches=limit) as api:
        results = await asyncio.gather(
            *(api.search(SearchRequest(Photo("q.jpg", b"photo", "image/jpeg"), k=1)) for _ in range(5))
        )
    assert all(result.gallery_size == 0 for result in results)
    assert scripted.most_searches_at_once == most_at_once
