"""The write-enabled API, shared by the Add landmark tests and the browser tests (one API start)."""

from __future__ import annotations

import shutil

import pytest

from tests.support import ApiServer
from tests.web.helpers import API_KEY, UPLOAD_LIMIT


@pytest.fixture(autouse=True)
def without_photo_boxes(monkeypatch):
    """The pages driven in-process (AppTest) answer without the second, slower search for the photo's
    boxes; so does the browser tests' shared page, and one browser test starts a page with them."""
    monkeypatch.setenv("WEB_PHOTO_BOXES", "0")


@pytest.fixture(scope="session")
def write_api(dev_index, tmp_path_factory):
    """An API over a copy of the session's dev index (these tests change the gallery), with a key
    and a 1 MiB upload limit: the dev photos are small, and the lowered limit puts the API's real
    413 answer on the upload path under test."""
    copy = tmp_path_factory.mktemp("web-admin") / "index"
    shutil.copytree(dev_index, copy)
    env = {"LANDMARKS_API_KEY": API_KEY, "LANDMARKS_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}
    with ApiServer(copy, env=env) as server:
        yield server
