"""The database password stays off command lines, where every local user can read it
(`ps`, /proc/<pid>/cmdline): `serve --workers N` hands its workers the DSN through a pipe,
`idnode psql` hands psql the password in its environment, and a password given as an
argument is refused."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from idnode.dsn import split_password
from idnode.embedded import EmbeddedPostgres, free_port
from idnode.store import migrations
from tests.helpers import child_pids, eventually, http_get
from tests.nodeproc import stop_process


def test_split_password_takes_it_from_the_user_part_or_the_query() -> None:
    assert split_password("postgresql://u:p%40ss@h:5/db?sslmode=require") == (
        "postgresql://u@h:5/db?sslmode=require", "p@ss")
    assert split_password("postgresql://u@h/db?password=pw&sslmode=require") == (
        "postgresql://u@h/db?sslmode=require", "pw")
    assert split_password("postgresql://u@h/db?passfile=/x/pgpass") == (
        "postgresql://u@h/db?passfile=/x/pgpass", None)
    assert split_password("postgresql:///db")[1] is None


def test_a_password_on_the_command_line_is_refused() -> None:
    for args in (["worker", "--dsn", "postgresql://postgres:hunter2@127.0.0.1:1/x"],
                 ["top", "migrate", "--database-url", "postgresql://u@h/x?password=hunter2"]):
        out = subprocess.run([sys.executable, "-m", "idnode", *args], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 2 and "carries a password" in out.stderr, out
        assert "hunter2" not in out.stderr


@pytest.fixture(scope="module")
def password_dsn() -> Iterator[str]:
    """A migrated database whose DSN carries the password (the embedded server's)."""
    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="idnode-secret-")), free_port(),
                          durable=False)
    pg.start()
    dsn = f"postgresql://postgres:{pg.password()}@127.0.0.1:{pg.port}/postgres"

    async def migrate() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(migrate())
    try:
        yield dsn
    finally:
        pg.destroy()


@pytest.mark.slow
async def test_workers_get_the_dsn_without_it_showing_on_their_command_lines(
        password_dsn: str, tmp_path: Path) -> None:
    password = split_password(password_dsn)[1]
    assert password
    config = tmp_path / "idnode.toml"
    config.write_text(f'database_url = "{password_dsn}"\n')
    config.chmod(0o600)
    http = free_port()
    env = dict(os.environ, IDNODE_DATA_DIR=str(tmp_path), IDNODE_LOG_LEVEL="WARNING",
               IDNODE_METRICS_PORT="0", IDNODE_HTTP_RATE_LIMIT="0")
    env.pop("IDNODE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "idnode", "--config", str(config), "serve", "--workers", "2",
         "--http-port", str(http), "--grpc-port", str(free_port()), "--handle-port",
         str(free_port())], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    ready: list[str] = []
    log: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            if re.match(r"READY http=", line):
                ready.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        async def both_ready() -> bool:
            assert proc.poll() is None, "".join(log)
            return len(ready) == 2

        await eventually(both_ready, timeout=60, interval=0.1)
        workers = child_pids(proc.pid)
        assert len(workers) == 2, workers
        for pid in (proc.pid, *workers):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            assert password not in cmdline, cmdline
            assert "postgresql://" not in cmdline, cmdline
        for pid in workers:
            # not in their environment either (their own children would inherit it)
            assert password not in Path(f"/proc/{pid}/environ").read_bytes().decode()
        # and they do use the database
        assert (await http_get(http, "/readyz")).status == 200
        assert (await http_get(http, "/api/handles/0.118.1/NONE")).status == 404
        assert password not in "".join(log)
    finally:
        assert stop_process(proc, timeout=20) == 0


def test_idnode_psql_with_a_configured_password(password_dsn: str, tmp_path: Path) -> None:
    config = tmp_path / "idnode.toml"
    config.write_text(f'database_url = "{password_dsn}"\n')
    out = subprocess.run([sys.executable, "-m", "idnode", "--config", str(config), "psql",
                          "-c", "SELECT 6 * 7"], capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0 and "42" in out.stdout, out
