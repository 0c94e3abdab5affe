"""POST /search/batch over real HTTP: an answer per photo, the same as POST /search gives it, and an
error per bad photo that leaves the others answered."""

from __future__ import annotations

import httpx

from tests.support import dev_protocol


def single(client: httpx.Client, name: str, data: bytes, k: int) -> httpx.Response:
    return client.post("/search", params={"k": k}, files={"image": (name, data, "image/jpeg")})


def test_a_batch_answers_each_photo_as_a_single_search_does(api_server):
    protocol = dev_protocol()
    photos = [(path.name, path.read_bytes()) for path, _ in protocol.queries[::20][:5]]
    photos.insert(2, ("notes.jpg", b"a shopping list, not a photo"))
    photos.append((protocol.distractors[0].name, protocol.distractors[0].read_bytes()))
    photos.append(("cut.jpg", protocol.queries[1][0].read_bytes()[:200]))
    with httpx.Client(base_url=api_server.url, timeout=120) as client:
        files = [("images", (name, data, "image/jpeg")) for name, data in photos]
        response = client.post("/search/batch", params={"k": 3}, files=files)
        assert response.status_code == 200, response.text
        items = response.json()["results"]
        assert [item["filename"] for item in items] == [name for name, _ in photos]
        for (name, data), item in zip(photos, items, strict=True):
            alone = single(client, name, data, 3)
            if alone.status_code == 200:
                assert item["error"] is None
                expected, got = alone.json(), item["result"]
                assert got["landmark"] == expected["landmark"] and got["refusal"] == expected["refusal"]
                assert [m["image_id"] for m in got["matches"]] == [m["image_id"] for m in expected["matches"]]
                assert len(got["matches"]) == 3
            else:
                assert item["result"] is None
                assert item["error"] == {"status": alone.status_code, "detail": alone.json()["detail"]}
        errors = {item["filename"]: item["error"]["status"] for item in items if item["error"]}
        assert errors == {"notes.jpg": 415, "cut.jpg": 400}
        answered = [item["result"] for item in items if item["result"]]
        assert sum(a["landmark"] is not None for a in answered) >= 4  # the five dev queries, nearly all named


def test_a_batch_over_the_limit_is_refused_whole(api_server):
    photo = dev_protocol().queries[0][0]
    files = [("images", (f"{i}.jpg", photo.read_bytes(), "image/jpeg")) for i in range(17)]
    response = httpx.post(f"{api_server.url}/search/batch", files=files, timeout=60)
    assert response.status_code == 413 and "At most 16 photos per batch" in response.json()["detail"]
    empty = httpx.post(f"{api_server.url}/search/batch", timeout=60)
    assert empty.status_code == 422
    bad = [("images", ("notes.jpg", b"a shopping list", "image/jpeg")), ("images", ("x.png", b"", "image/png"))]
    refused = httpx.post(f"{api_server.url}/search/batch", files=bad, timeout=60)
    assert refused.status_code == 415
    assert refused.json()["detail"].startswith("None of the photos could be searched. notes.jpg: ")
