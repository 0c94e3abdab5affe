"""A fresh machine has no gallery: the service starts, answers, and says how to get one."""

from __future__ import annotations

import httpx

from tests.api.test_bad_input import png


def test_service_on_a_missing_index_starts_and_explains(empty_api_server):
    url = empty_api_server.url
    health = httpx.get(f"{url}/health", timeout=30).json()
    assert health["ready"] and health["gallery_size"] == 0
    response = httpx.post(f"{url}/search", files={"image": ("a.png", png(64, 64), "image/png")}, timeout=60)
    assert response.status_code == 200
    body = response.json()
    assert body["landmark"] is None and body["matches"] == [] and body["landmarks"] == []
    assert "landmarks index build" in body["notice"]
    assert httpx.get(f"{url}/landmarks", timeout=30).json() == {"landmarks": [], "total": 0}
    assert "is empty" in empty_api_server.log()
