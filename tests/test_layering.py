"""The layering rules, one table for all of them, checked on every module's imports (inside functions
too):

- the engine (`landmarks/`) imports none of the applications built on it: the service (`api`), the
  command line (`cli`), the front ends (`bot`, `web`) and their `client`;
- the engine reads no environment variable: the service's settings (api/settings.py) and the
  command line read them and pass the engine plain values;
- the bot and the web page know the API only through the `client` package, and that package knows
  neither of them nor the service, the engine or their heavy dependencies.
"""

from __future__ import annotations

import ast

import pytest

from tests.support import REPO_ROOT

APPS = {"api", "cli", "bot", "web", "client"}
# The service, the engine and its command line, and what only they may install.
SERVER_SIDE = {"api", "landmarks", "cli", "torch", "torchvision", "timm", "faiss", "onnxruntime", "open_clip"}
FORBIDDEN = {
    "landmarks": APPS,
    "bot": SERVER_SIDE | {"web"},
    "web": SERVER_SIDE | {"bot"},
    "client": SERVER_SIDE | {"bot", "web"},
}


def imported_packages(source: str, filename: str = "<source>") -> set[str]:
    """The top-level package of every absolute import in the module, wherever it appears."""
    found = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def violations(package: str) -> dict[str, list[str]]:
    """Module -> the forbidden packages it imports, for every module under `package/`."""
    modules = sorted((REPO_ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/"
    wrong = {
        str(path.relative_to(REPO_ROOT)): sorted(
            imported_packages(path.read_text(encoding="utf-8"), str(path)) & FORBIDDEN[package]
        )
        for path in modules
    }
    return {name: packages for name, packages in wrong.items() if packages}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_layer_imports_nothing_above_it(package: str) -> None:
    assert not violations(package)


def test_front_ends_reach_the_api_through_the_client_package() -> None:
    for package in ("bot", "web"):
        users = [
            path
            for path in (REPO_ROOT / package).rglob("*.py")
            if "client" in imported_packages(path.read_text(encoding="utf-8"))
        ]
        assert users, f"{package}/ does not use the client package"


def test_the_check_sees_imports_in_every_form() -> None:
    source = (
        "import torch.nn\nfrom cli import main\nfrom . import sibling\n"
        "def later():\n    import faiss\n    from api.app import app\n"
    )
    assert imported_packages(source) == {"torch", "cli", "faiss", "api"}


def test_an_engine_module_that_imports_an_app_is_reported() -> None:
    found = imported_packages("import numpy\n\ndef helper():\n    from api import x\n") & FORBIDDEN["landmarks"]
    assert found == {"api"}


def environment_reads(source: str, filename: str = "<source>") -> list[int]:
    """Lines that touch the process environment: `os.environ`, `os.getenv`, `from os import environ`."""
    lines = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "environb", "getenv", "getenvb", "putenv"}:
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {a.name for a in node.names} & {"environ", "getenv"}
        ):
            lines.append(node.lineno)
    return lines


def test_the_engine_reads_no_environment() -> None:
    reads = {
        str(path.relative_to(REPO_ROOT)): environment_reads(path.read_text(encoding="utf-8"), str(path))
        for path in sorted((REPO_ROOT / "landmarks").rglob("*.py"))
    }
    assert not {name: lines for name, lines in reads.items() if lines}
    assert environment_reads("import os\n\ndef f():\n    return os.environ.get('X')\n") == [4]
    assert environment_reads("from os import getenv\n") == [1]
