"""The layering rule: the bot and the web page know the API only through the `client` package, and
that package knows neither of them nor the service, the engine or their heavy dependencies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

# The service, the engine and its command line, and what only they may install.
SERVER_SIDE = {"api", "landmarks", "cli", "torch", "torchvision", "timm", "faiss", "onnxruntime", "open_clip"}
FORBIDDEN = {
    "bot": SERVER_SIDE | {"web"},
    "web": SERVER_SIDE | {"bot"},
    "client": SERVER_SIDE | {"bot", "web"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in the module, wherever it appears (inside
    functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_front_ends_and_the_client_import_nothing_server_side(package: str) -> None:
    modules = sorted((REPO_ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/"
    wrong = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_packages(path) & FORBIDDEN[package]) for path in modules
    }
    assert not {name: packages for name, packages in wrong.items() if packages}


def test_front_ends_reach_the_api_through_the_client_package() -> None:
    for package in ("bot", "web"):
        users = [path for path in (REPO_ROOT / package).rglob("*.py") if "client" in imported_packages(path)]
        assert users, f"{package}/ does not use the client package"


def test_the_check_sees_imports_in_every_form(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        "import torch.nn\nfrom landmarks.cli import main\nfrom . import sibling\n"
        "def later():\n    import faiss\n    from api.app import app\n",
        encoding="utf-8",
    )
    assert imported_packages(module) == {"torch", "landmarks", "faiss", "api"}
