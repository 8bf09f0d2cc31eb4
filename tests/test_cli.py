"""The `idnode` command line, run as a user would."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
import time
from typing import Any

import pytest

from idnode.embedded import free_port
from tests.helpers import eventually, http_get
from tests.nodeproc import stop_process


def idnode(*args: str, dsn: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, IDNODE_LOG_LEVEL="WARNING")
    if dsn:
        env["IDNODE_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "idnode", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


@contextlib.asynccontextmanager
async def serving(dsn: str, *args: str) -> AsyncIterator[tuple[int, int, int]]:
    """`idnode serve ARGS` on free ports, once /readyz answers: (http, grpc, metrics); stopped
    with SIGTERM afterwards, which must end it cleanly."""
    http, grpc_port, metrics = free_port(), free_port(), free_port()
    env = dict(os.environ, IDNODE_DATABASE_URL=dsn, IDNODE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "idnode", "serve", *args, "--http-port", str(http),
         "--grpc-port", str(grpc_port), "--handle-port", str(free_port()),
         "--metrics-port", str(metrics)], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async def up() -> bool:
            try:
                return (await http_get(http, "/readyz")).status == 200
            except OSError:
                return False

        await eventually(up, timeout=30, interval=0.1)
        yield http, grpc_port, metrics
    finally:
        assert stop_process(proc, timeout=20) == 0


def refused_setting(**env: str) -> str:
    """stderr of `idnode migrate` under the IDNODE_* `env`, which must refuse it (exit 2)."""
    result = subprocess.run([sys.executable, "-m", "idnode", "migrate"], capture_output=True,
                            text=True, env=dict(os.environ, **env), timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    return result.stderr


def test_help_lists_the_commands() -> None:
    out = idnode("--help").stdout
    for command in ("serve", "migrate", "prefix", "register", "resolve"):
        assert command in out


def test_migrate_and_prefix_commands(dsn: str) -> None:
    assert "nothing" in idnode("migrate", dsn=dsn).stdout
    added = idnode("prefix", "allocate", "--enterprise", "1", "--prefix", "0.118.20", dsn=dsn)
    assert added.returncode == 0, added.stderr
    listed = idnode("prefix", "list", dsn=dsn).stdout
    assert "0.118.8\tactive" in listed and "0.118.20\tactive\tenterprise=1" in listed
    again = idnode("prefix", "allocate", "--enterprise", "1", "--prefix", "0.118.20", dsn=dsn)
    assert again.returncode != 0 and "already allocated" in again.stderr
    bad = idnode("prefix", "allocate", "--enterprise", "1", "--prefix", "88.x", dsn=dsn)
    assert bad.returncode != 0 and "INVALID_IDENTIFIER" in bad.stderr


def test_bad_setting_is_reported() -> None:
    assert "http_port" in refused_setting(IDNODE_HTTP_PORT="eighty")


@pytest.mark.slow
async def test_serve_with_workers_shares_ports_and_register_resolve_work(dsn: str,
                                                                       api_key: str) -> None:
    async with serving(dsn, "--workers", "2") as (http, grpc_port, metrics):
        reg = idnode("register", "0.118.8/CLI-1", "--value", "product.name=大豆",
                     "--grpc", f"127.0.0.1:{grpc_port}", "--api-key", api_key)
        assert reg.returncode == 0, reg.stderr
        res = idnode("resolve", "0.118.8/CLI-1", "--grpc", f"127.0.0.1:{grpc_port}")
        assert res.returncode == 0 and "大豆" in res.stdout
        missing = idnode("resolve", "0.118.8/CLI-404", "--grpc", f"127.0.0.1:{grpc_port}")
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
        workers = set()
        deadline = time.monotonic() + 20
        while len(workers) < 2 and time.monotonic() < deadline:
            text = (await http_get(metrics, "/metrics")).body.decode()
            workers |= {w for w in ("0", "1") if f'worker="{w}"' in text}
        assert workers == {"0", "1"}, "both worker processes should answer on the shared ports"
        # prometheus_client's multiprocess mode: whichever worker a scrape reaches answers for
        # every worker (their values are refreshed every second), so one scrape has both.
        one = await eventually(lambda: _scrape_with_both(metrics), timeout=10, interval=0.2)
        assert 'idnode_cache_entries{worker="0"}' in one
        assert (await http_get(http, "/metrics")).status == 404, "not on the public port"


async def _scrape_with_both(port: int) -> str | None:
    text = (await http_get(port, "/metrics")).body.decode()
    both = all(f'idnode_cache_entries{{worker="{w}"}}' in text for w in ("0", "1"))
    return text if both else None


def test_listings_have_headers_and_json(dsn: str, tmp_path: Any) -> None:
    import json

    idnode("prefix", "allocate", "--enterprise", "1", "--prefix", "0.118.21", dsn=dsn)
    audit = idnode("audit", "--limit", "5", dsn=dsn)
    assert audit.returncode == 0, audit.stderr
    lines = audit.stdout.splitlines()
    assert lines[0] == "ID\tAT\tACTOR\tCLIENT\tACTION\tTARGET\tBEFORE VERSION\tAFTER VERSION\tDETAIL"
    assert len(lines) > 1 and all(len(line.split("\t")) == 9 for line in lines)
    rows = json.loads(idnode("audit", "--limit", "5", "--json", dsn=dsn).stdout)
    assert rows and {"id", "at", "actor", "action", "target", "detail"} <= set(rows[0])
    keys = idnode("key", "list", dsn=dsn)
    assert keys.returncode == 0 and keys.stdout.splitlines()[0].startswith("KEY ID\tROLE")
    assert isinstance(json.loads(idnode("key", "list", "--json", dsn=dsn).stdout), list)
    env = dict(os.environ, IDNODE_LOG_LEVEL="WARNING", IDNODE_DATA_DIR=str(tmp_path))
    signing = subprocess.run([sys.executable, "-m", "idnode", "keys", "list"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert signing.stdout.splitlines()[0] == "KID\tALG\tSTATE", signing.stderr
    signing_json = subprocess.run([sys.executable, "-m", "idnode", "keys", "list", "--json"],
                                  env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(signing_json.stdout) == []


def test_sync_status_on_a_standalone_node_says_so(dsn: str) -> None:
    status = idnode("sync", "status", dsn=dsn)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("no upstream is configured: this node is standalone")
    assert "backlog" not in status.stdout and "last success" not in status.stdout


def test_serve_refuses_the_demo_prefix_unless_it_is_configured_or_a_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IDNODE_NODE_PREFIX"}
    done = subprocess.run([sys.executable, "-m", "idnode", "serve", "--http-port", "0"],
                          env={**env, "IDNODE_DATA_DIR": str(tmp_path)}, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2
    assert "set node_prefix" in done.stderr and "--demo" in done.stderr
    assert not (tmp_path / "pgdata").exists()  # refused before anything was started


@pytest.mark.slow
async def test_grpc_workers_split_the_front_doors(dsn: str, api_key: str) -> None:
    """`serve --workers 2 --grpc-workers 1`: worker 0 serves gRPC only, worker 1 HTTP (and
    the Handle protocol) only, so resolves never share a process with a batch being checked;
    both doors answer, and each worker counts only its own kind of request."""
    async with serving(dsn, "--workers", "2", "--grpc-workers", "1") as (http, grpc_port,
                                                                         metrics):
        for i in range(3):
            reg = idnode("register", f"0.118.8/SPLIT-{i}", "--value", "product.name=大豆",
                         "--grpc", f"127.0.0.1:{grpc_port}", "--api-key", api_key)
            assert reg.returncode == 0, reg.stderr
        for i in range(6):  # a new connection each: SO_REUSEPORT would spread them
            assert (await http_get(http, f"/api/handles/0.118.8/SPLIT-{i % 3}")).status == 200

        async def counted() -> str | None:
            text = (await http_get(metrics, "/metrics")).body.decode()
            done = ('idnode_grpc_requests_total{' in text
                    and 'idnode_http_requests_total{' in text)
            return text if done else None

        lines = (await eventually(counted, timeout=10, interval=0.2)).splitlines()

        def workers_counting(metric: str) -> set[str]:
            return {w for w in ("0", "1") for line in lines
                    if line.startswith(metric + "{") and f'worker="{w}"' in line}

        assert workers_counting("idnode_grpc_requests_total") == {"0"}
        assert workers_counting("idnode_http_requests_total") == {"1"}


def test_grpc_workers_must_leave_one_for_http() -> None:
    assert "grpc_workers" in refused_setting(IDNODE_WORKERS="2", IDNODE_GRPC_WORKERS="2")
