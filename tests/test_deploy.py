"""deploy/ stays true to the code: every IDNODE_* setting a manifest, compose file or unit sets
is one the node reads (a typo would be silently ignored by the orchestrator and fail only at
start), and the health probes point at endpoints the node serves."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from idnode import config
from idnode.config import Settings
from idnode.node import Node

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SETTINGS = {"IDNODE_" + f.name.upper() for f in fields(Settings)} | {"IDNODE_CONFIG"}
# An assignment: `IDNODE_X: …` (YAML), `IDNODE_X=…` (env, systemd), `name: IDNODE_X` (k8s env);
# `${IDNODE_X:-…}` is compose's own interpolation of the operator's shell, not a setting.
ASSIGNED = re.compile(r"(?<![{$])\b(IDNODE_[A-Z0-9_]+)\s*[:=]|name:\s*(IDNODE_[A-Z0-9_]+)")


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_idnode_variable_deploy_sets_is_a_setting(path: Path) -> None:
    text = path.read_text(errors="replace")
    names = {a or b for a, b in ASSIGNED.findall(text)}
    unknown = sorted(names - SETTINGS)
    assert not unknown, f"{path.name} sets {unknown}, which the node does not read"
    # and the values parse as their settings' types
    values = dict(re.findall(r"^\s*(IDNODE_[A-Z0-9_]+):\s*\"?([^\"\n#]*?)\"?\s*(?:#.*)?$",
                             text, re.M))
    plain = {k: v for k, v in values.items() if k in SETTINGS and "$" not in v and v
             and k != "IDNODE_CONFIG"}
    config.load(environ=plain)


def test_probes_use_the_nodes_health_endpoints() -> None:
    text = (DEPLOY / "k8s" / "idnode.yaml").read_text()
    paths = set(re.findall(r"path:\s*(/[a-z]+)", text))
    assert {"/healthz", "/readyz"} <= paths
    served = {"/healthz", "/readyz", "/metrics"}
    assert paths <= served, paths - served


async def test_health_endpoints_answer(node: Node) -> None:
    from tests.helpers import http_get
    for path in ("/healthz", "/readyz"):
        assert (await http_get(node.ports.http, path)).status == 200, path
    assert (await http_get(node.ports.metrics, "/metrics")).status == 200
