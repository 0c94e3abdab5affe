"""deploy/check.py's own failure messages, without Docker: a broken compose file names its service."""

from __future__ import annotations

import shutil

import pytest

from deploy.check import COMPOSE_FILES, CheckFailed, preflight, wait_healthy
from tests.support import REPO_ROOT


def test_the_real_compose_files_pass_the_preflight():
    preflight([REPO_ROOT / name for name in COMPOSE_FILES])


def test_an_api_healthcheck_on_the_wrong_port_fails_naming_the_api(tmp_path):
    for name in COMPOSE_FILES:
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    broken = tmp_path / COMPOSE_FILES[0]
    text = broken.read_text()
    assert text.count("http://127.0.0.1:8000/ready") == 1
    broken.write_text(text.replace("http://127.0.0.1:8000/ready", "http://127.0.0.1:8001/ready"))
    with pytest.raises(CheckFailed) as failure:
        preflight([tmp_path / name for name in COMPOSE_FILES])
    message = str(failure.value)
    assert "service 'api'" in message and "8001" in message and "8000" in message
    assert "'web'" not in message


def test_waiting_on_an_unhealthy_container_names_its_service_and_its_last_probe():
    rows = [
        {"Service": "api", "Name": "landmark-search-api-1", "State": "running", "Health": "unhealthy"},
        {"Service": "web", "Name": "landmark-search-web-1", "State": "running", "Health": "healthy"},
    ]
    with pytest.raises(CheckFailed) as failure:
        wait_healthy(
            ["api", "web"],
            ps=lambda: rows,
            sleep=lambda s: None,
            log=lambda name: f"{name}: ConnectionRefusedError 8001",
        )
    message = str(failure.value)
    assert "service 'api': health unhealthy" in message and "ConnectionRefusedError 8001" in message
    assert "'web'" not in message


def test_waiting_is_bounded_and_names_a_service_that_never_started():
    clock = iter(range(0, 10_000, 50))
    rows = [{"Service": "api", "Name": "a", "State": "running", "Health": "healthy"}]
    with pytest.raises(CheckFailed, match="service 'web': no container"):
        wait_healthy(
            ["api", "web"],
            timeout=300,
            ps=lambda: rows,
            sleep=lambda s: None,
            clock=lambda: next(clock),
            log=lambda n: "",
        )


def test_a_healthy_stack_passes():
    rows = [{"Service": s, "Name": s, "State": "running", "Health": "healthy"} for s in ("api", "web")]
    assert wait_healthy(["api", "web"], ps=lambda: rows, sleep=lambda s: None, log=lambda n: "") >= 0


def test_the_slim_images_default_model_is_the_registry_default():
    from landmarks.models import exported, registry

    assert exported.DEFAULT_MODEL == registry.DEFAULT_MODEL
