"""The layer contracts (pyproject.toml [tool.importlinter]) hold, and the checker would see a
break: an import from a lower layer into a higher one fails the run."""
from __future__ import annotations

import shutil
import subprocess
import sys
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


def _lint_with_probe(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    """The checker's run over a copy of the package with idnode/core/layer_probe.py added."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(ROOT / "idnode", copy / "idnode",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "idnode" / "core" / "layer_probe.py").write_text(source, encoding="utf-8")
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
