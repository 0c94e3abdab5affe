"""Dev inputs for the web tests, chosen from the evaluation protocol (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

from client import LandmarksClient, Photo, SearchRequest
from tests.support import dev_protocol, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = REPO_ROOT / "web" / "app.py"
ARTIFACTS = REPO_ROOT / "test-artifacts"

# Landmarks whose first protocol query the off-the-shelf model gets right with a wide margin
# (every one of the top 8 matches is that landmark), so a failure means the page broke.
UPLOAD_LANDMARK = "taj_mahal"
CAMERA_LANDMARK = "india_gate"
# The write-enabled API (tests/web/conftest.py): its key and its lowered 1 MiB upload limit.
API_KEY = "web-admin-test-key"
UPLOAD_LIMIT = 2**20


def dev_query(landmark_id: str = UPLOAD_LANDMARK) -> tuple[Path, str]:
    """The first query photo of that landmark under the protocol."""
    return next((path, lid) for path, lid in dev_protocol().queries if lid == landmark_id)


def refused_distractor(api_url: str) -> Path:
    """A distractor photo this API refuses as not showing a landmark at all (where the engine draws
    the line is its own business)."""
    with LandmarksClient(api_url) as client:
        for path in dev_protocol().distractors[:20]:
            if client.search(SearchRequest(Photo(path.name, path.read_bytes(), "image/jpeg"), k=1)).not_a_landmark:
                return path
    raise AssertionError("the API called every one of 20 distractors a landmark")


def closed_port_url() -> str:
    """A loopback address where nothing listens: what the page sees when the API is stopped."""
    return f"http://127.0.0.1:{free_port()}"
