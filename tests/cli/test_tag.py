"""`landmarks tag`: a photo library tagged as /search answers it, resumed after kill -9 without redoing
what was written."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from cli.xmp import read_keywords, sidecar_path
from landmarks.gallery import scan_gallery
from tests.cli.test_xmp import MANAGERS_SIDECAR
from tests.support import REPO_ROOT, ApiServer, dev_protocol, require_dev_data, run_cli, with_gps


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A nested folder of dev photos as a photo library holds them (every fourth query and distractor),
    with a file that is no photo and a phone photo that carries its GPS."""
    root = tmp_path_factory.mktemp("library")
    protocol = dev_protocol()
    for position, (path, label) in enumerate(library_queries()):
        folder = root / ("2024" if position % 2 else "2025") / label[:3]
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(path, folder / f"{label}-{path.name}")
    for path in library_distractors():
        (root / "misc").mkdir(exist_ok=True)
        os.symlink(path, root / "misc" / path.name)
    (root / "misc" / "broken.jpg").write_bytes(b"not a photo at all")
    path, label = protocol.queries[0]
    landmark = scan_gallery(require_dev_data() / "images").landmarks[label]
    (root / "phone").mkdir()
    (root / "phone" / "with-gps.jpg").write_bytes(with_gps(path, (landmark.lat + 0.002, landmark.lon)))
    return root


def library_queries():  # noqa: N802 - a constant of the protocol, computed
    return dev_protocol().queries[::4]


def library_distractors():  # noqa: N802
    return dev_protocol().distractors[::4]


def read_rows(out) -> list[dict]:
    with out.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def tag_command(library, out, index) -> list[str]:
    return [sys.executable, "-m", "cli", "tag", str(library), "--out", str(out), "--index", str(index), "--no-progress"]


def test_tag_resumes_after_kill_without_redoing_photos(library, lite_index, tmp_path):
    out = tmp_path / "tags.csv"
    total = len(library_queries()) + len(library_distractors()) + 2  # + the broken and the GPS photo
    process = subprocess.Popen(tag_command(library, out, lite_index), cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out.exists() and out.read_text().count("\n") > 9):  # the header and at least one batch
        assert process.poll() is None, "tag ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = out.read_bytes()
    done = first[: first.rfind(b"\n") + 1]  # a row cut short by the kill is not done
    finished = done.count(b"\n") - 1  # less the header
    assert 8 <= finished < total

    resumed = subprocess.run(tag_command(library, out, lite_index), cwd=REPO_ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{finished} already tagged, {total - finished} to go" in resumed.stdout
    assert out.read_bytes().startswith(done)  # finished rows are kept as written, not redone
    rows = read_rows(out)
    assert len(rows) == total and len({row["path"] for row in rows}) == total
    by_path = {row["path"]: row for row in rows}
    assert by_path["misc/broken.jpg"]["error"] and not by_path["misc/broken.jpg"]["landmark_id"]
    again = run_cli(*tag_command(library, out, lite_index)[3:])
    assert again.returncode == 0 and f"{total} already tagged, 0 to go" in again.stdout


def test_tags_match_the_api_photo_by_photo(library, lite_index, tmp_path):
    out = tmp_path / "tags.jsonl"
    # A photo manager's sidecar beside one photo: --xmp adds to it.
    first = next(path for path in sorted(library.rglob("*.jpg")) if path.parent.name != "misc")
    sidecar_path(first).write_text(MANAGERS_SIDECAR)
    result = run_cli(*tag_command(library, out, lite_index)[3:], "--xmp")
    assert result.returncode == 0, result.stderr + result.stdout
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(set(row) >= {"path", "landmark_id", "confidence", "refusal", "lat", "lon"} for row in rows)
    by_path = {row["path"]: row for row in rows}
    phone = by_path["phone/with-gps.jpg"]
    assert phone["photo_lat"] == pytest.approx(phone["lat"] + 0.002, abs=1e-4) and phone["distance_km"] < 0.3
    assert by_path["misc/broken.jpg"]["photo_lat"] is None
    # Sidecars: the named photos' (their landmark as a keyword), none for refusals and unreadable files.
    for row in rows:
        sidecar = sidecar_path(library / row["path"])
        if row["landmark_id"]:
            assert row["name"] in read_keywords(sidecar), row
        elif library / row["path"] != first:
            assert not sidecar.exists(), row
    named_first = by_path[str(first.relative_to(library))]
    assert read_keywords(sidecar_path(first)) == ["Holiday 2024"] + (
        [named_first["name"]] if named_first["name"] else []
    )
    if phone["landmark_id"]:  # its own GPS is better than the landmark's: no position written
        assert "GPSLatitude" not in sidecar_path(library / "phone" / "with-gps.jpg").read_text()
    sample = [row for row in rows if not row["error"]][::12] + [phone]
    with ApiServer(lite_index) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for row in sample:
            photo = library / row["path"]
            answer = client.post("/search", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}).json()
            named = answer["landmark"]
            assert row["landmark_id"] == (named["landmark_id"] if named else None), row
            assert row["refusal"] == answer["refusal"], row
            if named:
                assert row["confidence"] == pytest.approx(named["confidence"], abs=2e-3)
                assert row["name"] == named["name"] and row["lat"] is not None


def test_box_column_says_where_the_landmark_is(dev_index, tmp_path):
    """`--box`: the named landmark's region, as POST /search?box=true finds it, in the row (JSON: 4 numbers);
    over the index and with the composite that tests/api/test_region_e2e.py has the service name."""
    from landmarks.search.region import iou
    from tests.api.test_region_e2e import composites

    made = composites()[0]
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "pasted.jpg").write_bytes(made.data)
    out = tmp_path / "tags.jsonl"
    result = run_cli("tag", str(folder), "--out", str(out), "--index", str(dev_index), "--box", "--no-progress")
    assert result.returncode == 0, result.stderr + result.stdout
    [row] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert row["landmark_id"] == made.label, row
    assert len(row["box"]) == 4 and iou(row["box"], made.box) >= 0.5, (row, made.box)


def test_a_csv_of_other_columns_is_not_appended_to(tmp_path):
    from cli import CommandError
    from cli.tag import tagged_paths

    out = tmp_path / "old.csv"
    out.write_text("path,landmark_id\nsome/photo.jpg,taj_mahal\n", encoding="utf-8")
    with pytest.raises(CommandError, match="other columns"):
        tagged_paths(out, jsonl=False)
    assert out.read_text(encoding="utf-8") == "path,landmark_id\nsome/photo.jpg,taj_mahal\n"
