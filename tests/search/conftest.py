"""The default model, loaded once for the session (the one the session's dev index is built with)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def extractor(default_extractor):
    return default_extractor
