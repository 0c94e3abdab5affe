"""Gallery cleaning (landmarks.quality.cleaning through `landmarks index clean`) on every dev photo, as an
operator indexes them: what it flags, the report a person checks, the exclusion that a search and the
API respect, and undoing it."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from landmarks.index.gallery_index import STORE_FILE
from landmarks.index.store import GalleryStore
from tests.support import ApiServer, run_cli

# The hawa_mahal photos taken at a rooftop café, a table, cups or chairs filling the frame (the
# facade small behind them): what named office photos "Hawa Mahal" before the gallery was cleaned.
CAFE_PHOTOS = {"hawa_mahal/005.jpg", "hawa_mahal/011.jpg", "hawa_mahal/012.jpg", "hawa_mahal/013.jpg"}


def test_cleaning_aggregates_landmarks_as_the_search_does():
    from landmarks.quality.cleaning import AGGREGATE_TOP
    from landmarks.search.ranking import DEFAULT_AGGREGATE_TOP

    assert AGGREGATE_TOP == DEFAULT_AGGREGATE_TOP


def photo_key(path: str) -> str:
    return "/".join(Path(path).parts[-2:])


def read_suspects(index: Path) -> list[dict]:
    with (index / "cleaning" / "suspects.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cleaned(every_photo_index, tmp_path_factory) -> tuple[Path, str]:
    index = shutil.copytree(every_photo_index, tmp_path_factory.mktemp("cleaned") / "index")
    result = run_cli("index", "clean", str(index))
    assert result.returncode == 0, result.stderr + result.stdout
    return index, result.stdout


def test_clean_flags_the_cafe_photos_and_reports_them_for_a_person(cleaned):
    index, output = cleaned
    suspects = read_suspects(index)
    flagged = {photo_key(row["path"]) for row in suspects}
    assert CAFE_PHOTOS <= flagged, sorted(k for k in flagged if k.startswith("hawa_mahal"))
    # Few enough for a person to check one by one: measured 49 of 676 (7%).
    assert 4 <= len(suspects) <= 0.10 * 676, len(suspects)
    assert {row["reason"] for row in suspects} <= {"no_landmark", "other_landmark"}
    assert all(row["detail"] for row in suspects)
    assert f"{len(suspects)} of 676 gallery photos" in output
    sheet = Image.open(index / "cleaning" / "contact_sheet.jpg")
    sheet.load()
    assert sheet.width >= 6 * 150 and sheet.height >= (len(suspects) // 6) * 150  # one captioned cell a suspect
    # Excluded, never deleted: every photo is still in the store, the suspects out of matching.
    assert _excluded_ids(index) == {int(row["image_id"]) for row in suspects}
    store = GalleryStore(index / STORE_FILE)
    try:
        assert len(store.images()) == 676
        assert store.count() == 676 - len(suspects)
    finally:
        store.close()


def test_excluded_photos_are_never_matched_and_the_api_says_why(cleaned):
    index, _ = cleaned
    suspects = read_suspects(index)
    cafe = [row for row in suspects if photo_key(row["path"]) in CAFE_PHOTOS]
    with ApiServer(index) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        detail = client.get("/landmarks/hawa_mahal").json()
        left_out = {item["image_id"]: item for item in detail["excluded"]}
        assert {int(row["image_id"]) for row in cafe} <= set(left_out)
        assert all(item["reason"] in ("no_landmark", "other_landmark") and item["detail"] for item in left_out.values())
        assert detail["image_count"] == 38 - len(left_out) == len(detail["images"])
        assert not set(left_out) & {item["image_id"] for item in detail["images"]}
        listed = {item["landmark_id"]: item for item in client.get("/landmarks").json()["landmarks"]}
        assert listed["hawa_mahal"]["excluded_count"] == len(left_out)
        assert client.get("/health").json()["gallery_size"] == 676 - len(suspects)
        # A café photo searched for itself finds other photos: its own copy is out of matching.
        photo = Path(cafe[0]["path"])
        found = client.post(
            "/search", params={"k": 20}, files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}
        )
        assert found.status_code == 200
        assert int(cafe[0]["image_id"]) not in {m["image_id"] for m in found.json()["matches"]}
        # The photo itself is kept and still served.
        assert client.get(f"/gallery/{cafe[0]['image_id']}").status_code == 200


def test_a_person_keeps_a_photo_and_restores_the_rest(cleaned, tmp_path):
    index = shutil.copytree(cleaned[0], tmp_path / "index")
    first = read_suspects(index)[0]
    kept = run_cli("index", "clean", str(index), "--keep", first["image_id"])
    assert kept.returncode == 0, kept.stderr + kept.stdout
    assert first["image_id"] not in {str(i) for i in _excluded_ids(index)}
    again = run_cli("index", "clean", str(index))  # cleaning again leaves the kept photo alone
    assert again.returncode == 0, again.stderr + again.stdout
    assert first["image_id"] not in {row["image_id"] for row in read_suspects(index)}
    assert len(read_suspects(index)) == len(cleaned_suspects := read_suspects(cleaned[0])) - 1, cleaned_suspects[:1]
    info = run_cli("index", "info", str(index))
    count = len(cleaned_suspects) - 1
    assert f"{676 - count} photos of 24 landmarks ({count} more excluded from matching" in info.stdout, info.stdout
    restored = run_cli("index", "clean", str(index), "--restore")
    assert restored.returncode == 0 and f"{len(cleaned_suspects) - 1} photos match again" in restored.stdout
    assert not _excluded_ids(index)
    unknown = run_cli("index", "clean", str(index), "--keep", "999999")
    assert unknown.returncode != 0 and "no gallery photo with id 999999" in unknown.stderr


def _excluded_ids(index: Path) -> set[int]:
    store = GalleryStore(index / STORE_FILE)
    try:
        sources = {s for s, r in store.reviews().items() if r.verdict == "excluded"}
        return set(store.image_ids_by_source(sorted(sources)).values())
    finally:
        store.close()
