"""The one error shape: every failure, an unexpected one too, answers JSON {"detail": "..."}."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.decoding import DecodeBudget, DecodeBusy
from api.errors import install_error_handlers
from api.service import StorageUnavailable


def app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom():
        raise exc

    return app


@pytest.mark.parametrize(
    "exc,status,words",
    [
        (RuntimeError("a bug"), 500, "Internal error"),
        (StorageUnavailable("disk full"), 503, "cannot be written"),
        (DecodeBusy(retry_after=3), 503, "busy"),
    ],
)
def test_failures_answer_json_with_a_detail(exc, status, words):
    with TestClient(app_raising(exc), raise_server_exceptions=False) as client:
        answer = client.get("/boom")
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"detail"} and words in answer.json()["detail"]
    assert "a bug" not in answer.text and "disk full" not in answer.text  # internals stay in the log
    if status == 503:
        assert answer.headers["retry-after"].isdigit()


def test_the_decode_budget_holds_photos_and_bytes_within_its_limits():
    budget = DecodeBudget(max_bytes=100, max_photos=2, wait=0.3)
    first = budget.acquire(60)
    with pytest.raises(DecodeBusy):
        budget.acquire(60)  # 120 bytes would not fit
    second = budget.acquire(40)
    with pytest.raises(DecodeBusy):
        budget.acquire(1)  # two photos already held
    for reserved in (first, second):
        threading.Timer(0.1, budget.release, args=(reserved,)).start()
    started = time.monotonic()
    third = budget.acquire(1000)  # larger than the whole budget: waits until it is empty, then takes it all
    assert 0.05 < time.monotonic() - started < 0.3 and third == 100
    budget.release(third)
    assert budget.bytes_held == 0 and budget.photos_held == 0
