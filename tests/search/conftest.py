"""The default model, loaded once for the search tests (the one the session's dev index is built with)."""

from __future__ import annotations

import pytest

from landmarks.models import load_extractor


@pytest.fixture(scope="package")
def extractor():
    return load_extractor(device="cpu")
