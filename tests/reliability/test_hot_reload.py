"""Index hot reload under load: searches running while the index is swapped all succeed."""

from __future__ import annotations

import asyncio

import httpx

from tests.support import dev_protocol


async def search_and_reload(
    url: str, key: str, photos: list[bytes], searches: int, reloads: int
) -> tuple[list[int], list[int]]:
    statuses: list[int] = []
    reload_statuses: list[int] = []
    pending = iter(range(searches))

    async def searcher(client: httpx.AsyncClient) -> None:
        for number in pending:
            response = await client.post(
                f"{url}/search", files={"image": ("q.jpg", photos[number % len(photos)], "image/jpeg")}
            )
            statuses.append(response.status_code)

    async def reloader(client: httpx.AsyncClient) -> None:
        for _ in range(reloads):
            await asyncio.sleep(0.5)
            response = await client.post(f"{url}/index/reload", headers={"X-API-Key": key})
            reload_statuses.append(response.status_code)

    async with httpx.AsyncClient(timeout=180) as client:
        await asyncio.gather(reloader(client), *(searcher(client) for _ in range(8)))
    return statuses, reload_statuses


def test_reloading_the_index_under_load_fails_no_search(reliable_server, secrets_in_env):
    photos = [path.read_bytes() for path, _ in dev_protocol().queries[:16]]
    statuses, reload_statuses = asyncio.run(
        search_and_reload(reliable_server.url, secrets_in_env["LANDMARKS_API_KEY"], photos, searches=64, reloads=3)
    )
    assert reload_statuses == [200, 200, 200]
    assert statuses == [200] * 64
