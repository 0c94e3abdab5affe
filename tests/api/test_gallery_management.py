"""Gallery management over HTTP: add, find, delete, keys, reload, and durability under SIGKILL."""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest

from tests.support import ApiServer, dev_protocol, landmark_names, run_cli

KEY = "test-key-5f1c"
TARGET = "qutub_minar"


@pytest.fixture
def index_copy(dev_index, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(dev_index, copy)
    return copy


@pytest.fixture
def server(index_copy):
    with ApiServer(index_copy, env={"LANDMARKS_API_KEY": KEY}) as running:
        yield running


def photos_of(landmark_id: str, split: str = "gallery"):
    protocol = dev_protocol()
    return [path for path, lid in getattr(protocol, split) if lid == landmark_id]


def search_top(url: str, path) -> dict:
    response = httpx.post(f"{url}/search", files={"image": (path.name, path.read_bytes(), "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def add_photos(url: str, landmark_id: str, paths, key: str | None = KEY) -> httpx.Response:
    files = [("images", (path.name, path.read_bytes(), "image/jpeg")) for path in paths]
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(f"{url}/landmarks/{landmark_id}/images", files=files, headers=headers, timeout=120)


def test_delete_then_add_a_landmark_and_find_it_with_a_held_out_photo(server):
    url, headers = server.url, {"X-API-Key": KEY}
    query = photos_of(TARGET, "queries")[0]
    assert search_top(url, query)["landmarks"][0]["landmark_id"] == TARGET

    deleted = httpx.delete(f"{url}/landmarks/{TARGET}", headers=headers, timeout=60)
    assert deleted.status_code == 200 and deleted.json()["removed_images"] > 0
    after_delete = search_top(url, query)
    assert TARGET not in {lm["landmark_id"] for lm in after_delete["landmarks"]}
    assert TARGET not in {m["landmark_id"] for m in after_delete["matches"]}
    assert httpx.get(f"{url}/landmarks/{TARGET}", timeout=30).status_code == 404

    body = {
        "landmark_id": TARGET,
        "name": landmark_names()[TARGET],
        "city": "Delhi",
        "country": "India",
        "lat": 28.5245,
        "lon": 77.1855,
        "era": "1192",
    }
    created = httpx.post(f"{url}/landmarks", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    assert created.json()["era"] == "1192"
    assert httpx.post(f"{url}/landmarks", json=body, headers=headers, timeout=30).status_code == 409

    gallery = photos_of(TARGET)[:10]
    added = add_photos(url, TARGET, [*gallery, query.parent.parent.parent / "labels.csv"])
    assert added.status_code == 201, added.text
    assert len(added.json()["added"]) == len(gallery)
    assert [r["filename"] for r in added.json()["rejected"]] == ["labels.csv"]

    found = search_top(url, query)
    assert found["landmarks"][0]["landmark_id"] == TARGET
    assert found["landmarks"][0]["city"] == "Delhi"
    new_ids = {ref["image_id"] for ref in added.json()["added"]}
    assert found["matches"][0]["image_id"] in new_ids
    assert httpx.get(found["matches"][0]["image_url"], timeout=30).status_code == 200

    one = next(iter(new_ids))
    assert httpx.delete(f"{url}/gallery/{one}", headers=headers, timeout=30).status_code == 200
    assert httpx.get(f"{url}/gallery/{one}", timeout=30).status_code == 404
    assert httpx.get(f"{url}/landmarks/{TARGET}", timeout=30).json()["image_count"] == len(gallery) - 1


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["no-key", "wrong-key"])
def test_writes_without_the_key_are_refused_and_change_nothing(server, key):
    url = server.url
    headers = {"X-API-Key": key} if key else {}
    before = httpx.get(f"{url}/landmarks", timeout=30).json()
    attempts = [
        httpx.post(f"{url}/landmarks", json={"landmark_id": "new_place", "name": "New"}, headers=headers, timeout=30),
        add_photos(url, TARGET, photos_of("taj_mahal")[:1], key=key),
        httpx.delete(f"{url}/landmarks/{TARGET}", headers=headers, timeout=30),
        httpx.delete(f"{url}/gallery/1", headers=headers, timeout=30),
        httpx.post(f"{url}/index/reload", headers=headers, timeout=30),
    ]
    assert [r.status_code for r in attempts] == [401 if key is None else 403] * len(attempts)
    assert all("key" in r.json()["detail"].lower() for r in attempts)
    assert httpx.get(f"{url}/landmarks", timeout=30).json() == before


def test_writes_are_disabled_when_no_key_is_configured(index_copy):
    with ApiServer(index_copy) as server:
        response = httpx.delete(f"{server.url}/landmarks/{TARGET}", headers={"X-API-Key": "anything"}, timeout=30)
        assert response.status_code == 403 and "LANDMARKS_API_KEY" in response.json()["detail"]


def test_reload_picks_up_an_offline_rebuild_without_a_restart(server, index_copy, tmp_path):
    from landmarks.evaluation.protocol import materialize_gallery

    protocol = dev_protocol()
    smaller = [(p, lid) for p, lid in protocol.gallery if lid != TARGET]
    gallery = materialize_gallery(smaller, tmp_path / "gallery")
    assert run_cli("index", "build", str(gallery), "--out", str(index_copy), "--no-progress").returncode == 0
    assert httpx.get(f"{server.url}/health", timeout=30).json()["landmark_count"] == 24
    reloaded = httpx.post(f"{server.url}/index/reload", headers={"X-API-Key": KEY}, timeout=120)
    assert reloaded.status_code == 200 and reloaded.json()["landmark_count"] == 23
    assert TARGET not in {
        lm["landmark_id"] for lm in search_top(server.url, photos_of(TARGET, "queries")[0])["landmarks"]
    }


def test_every_acknowledged_add_survives_sigkill(index_copy):
    photos = [p for lid in ("taj_mahal", "charminar", "golden_temple", "hawa_mahal") for p in photos_of(lid)[:8]]
    acknowledged: list[tuple[int, str]] = []
    server = ApiServer(index_copy, env={"LANDMARKS_API_KEY": KEY}).start()
    headers = {"X-API-Key": KEY}
    assert (
        httpx.post(
            f"{server.url}/landmarks", json={"landmark_id": "stream", "name": "Stream"}, headers=headers, timeout=30
        ).status_code
        == 201
    )
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(timeout=60) as client:
            for path in photos:
                if stop.is_set():
                    return
                try:
                    response = client.post(
                        f"{server.url}/landmarks/stream/images",
                        files={"images": (path.name, path.read_bytes(), "image/jpeg")},
                        headers=headers,
                    )
                except httpx.HTTPError:
                    return  # the server died mid-request: this add was never acknowledged
                if response.status_code == 201:
                    acknowledged.append((response.json()["added"][0]["image_id"], path.name))

    writer = threading.Thread(target=stream)
    writer.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.kill()  # SIGKILL: no shutdown hook runs, the FAISS cache is not saved
    server.process.wait()
    stop.set()
    writer.join()
    assert len(acknowledged) >= 6

    with ApiServer(index_copy, env={"LANDMARKS_API_KEY": KEY}) as restarted:
        stored = {
            ref["image_id"] for ref in httpx.get(f"{restarted.url}/landmarks/stream", timeout=30).json()["images"]
        }
        assert {image_id for image_id, _ in acknowledged} <= stored
        last_id, last_name = acknowledged[-1]
        top = search_top(restarted.url, next(p for p in photos if p.name == last_name and p in photos))
        assert top["matches"][0]["score"] > 0.99
