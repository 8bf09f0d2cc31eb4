"""The layer contracts (pyproject.toml [tool.importlinter]) hold, and the checker would see a
break: an import from a lower layer into a higher one fails the run."""
from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_layer_contracts_hold() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _lint_with_probe(tmp_path: Path, source: str,
                     package: str = "core") -> subprocess.CompletedProcess[str]:
    """The checker's run over a copy of the package with idnode/<package>/layer_probe.py
    added."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(ROOT / "idnode", copy / "idnode",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "idnode" / package / "layer_probe.py").write_text(source, encoding="utf-8")
    return subprocess.run([str(LINT), "--no-cache"], cwd=copy, capture_output=True, text=True,
                          timeout=120, check=False, env={"PYTHONPATH": str(copy),
                                                         "PATH": "/usr/bin:/bin"})


def test_an_import_into_a_higher_layer_breaks_a_contract(tmp_path: Path) -> None:
    # core reaching into a transport: what the first contract forbids
    done = _lint_with_probe(tmp_path, "from idnode.api.http import render  # noqa: F401\n")
    assert done.returncode != 0, done.stdout
    assert "idnode.core.layer_probe -> idnode.api.http.render" in done.stdout


def test_the_rules_importing_a_store_a_cache_or_asyncpg_break_a_contract(
        tmp_path: Path) -> None:
    done = _lint_with_probe(tmp_path, "import asyncpg  # noqa: F401\n"
                                      "from idnode.cache import HotCache  # noqa: F401\n"
                                      "from idnode.store.handles import HandleStore  # noqa: F401\n")
    assert done.returncode != 0, done.stdout
    assert "The rules see the stores and caches through interfaces" in done.stdout
    for target in ("asyncpg", "idnode.cache", "idnode.store.handles"):
        assert f"idnode.core.layer_probe -> {target} " in done.stdout, target


_NO_ASYNCPG = "Database connections stay in the stores (no asyncpg outside store/)"


def test_asyncpg_outside_the_stores_breaks_a_contract(tmp_path: Path) -> None:
    done = _lint_with_probe(tmp_path, "import asyncpg  # noqa: F401\n", package="cli")
    assert done.returncode != 0, done.stdout
    assert f"{_NO_ASYNCPG} BROKEN" in " ".join(done.stdout.split()), done.stdout
    assert "idnode.cli.layer_probe -> asyncpg " in done.stdout


def test_every_module_but_the_stores_is_kept_from_asyncpg() -> None:
    # The contract lists its modules one by one (idnode itself would include idnode.store):
    # a new top-level module missing from it could import asyncpg unnoticed.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"]
                  if c["name"] == _NO_ASYNCPG]
    top = {f"idnode.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "idnode")])}
    assert set(contract["source_modules"]) == top - {"idnode.store"}
    assert contract["forbidden_modules"] == ["asyncpg"]
