"""The embedded PostgreSQL trusts nobody: password (SCRAM) only, the password in a 0600 file
beside pgdata, and, run as root, a server user that can read nothing beside its data. Other
local users are played by `nobody` and `embedded_postgres` (runuser, from util-linux)."""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from idnode import keys
from idnode.config import Settings
from idnode.embedded import SYSTEM_USER, EmbeddedPostgres, _bin, free_port

ROOT = os.geteuid() == 0


def as_user(user: str, *cmd: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.fail("runuser is missing: apt-get install util-linux")
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    return subprocess.run([runuser, "-u", user, "--", "env", *extra, *cmd], cwd="/",
                          capture_output=True, text=True, timeout=60)


def other_user() -> str:
    """A local user that is neither the node's nor (run as root) the server's."""
    if not ROOT:
        pytest.fail("playing another local user needs root (CI runs the suite as root)")
    return "nobody"


@pytest.fixture(scope="module")
def embedded() -> Iterator[tuple[EmbeddedPostgres, Settings]]:
    """An embedded server in a data_dir that also holds the node's key passphrase and
    keyring, as `idnode serve` lays it out."""
    data_dir = Path(tempfile.mkdtemp(prefix="idnode-embedded-"))
    pg = EmbeddedPostgres(data_dir, free_port(), durable=False)
    pg.start()
    settings = Settings(data_dir=data_dir)
    keys.keyring(settings)
    try:
        yield pg, settings
    finally:
        pg.destroy()


async def test_the_node_connects_with_the_password_file(
        embedded: tuple[EmbeddedPostgres, Settings]) -> None:
    pg, _ = embedded
    assert pg.password() not in pg.dsn
    info = pg.passfile.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    conn = await asyncpg.connect(pg.dsn)
    try:
        assert await conn.fetchval("SELECT current_user") == "postgres"
        methods = {r[0] for r in await conn.fetch(
            "SELECT auth_method FROM pg_hba_file_rules WHERE error IS NULL")}
    finally:
        await conn.close()
    assert methods == {"scram-sha-256"}
    # psql (`idnode psql`) reads the same file
    out = subprocess.run([_bin("psql"), pg.dsn, "-w", "-XAtc", "SELECT 41 + 1"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "42", out.stderr


def test_another_local_user_cannot_connect(embedded: tuple[EmbeddedPostgres, Settings]) -> None:
    pg, _ = embedded
    user = other_user()
    tcp = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    # (1): over TCP, without the password
    out = as_user(user, _bin("psql"), tcp, "-w", "-XAtc", "SELECT 1")
    assert out.returncode != 0 and "password" in out.stderr, out
    # (2): with a guessed one
    out = as_user(user, _bin("psql"), tcp, "-w", "-XAtc", "SELECT 1", env={"PGPASSWORD": "x"})
    assert out.returncode != 0 and "password authentication failed" in out.stderr, out
    # (3): through the Unix socket, which lives in pgdata (0700, the server's)
    out = as_user(user, _bin("psql"), "-h", str(pg.pgdata), "-p", str(pg.port), "-U",
                  "postgres", "-w", "-XAtc", "SELECT 1")
    assert out.returncode != 0 and "Permission denied" in out.stderr, out
    # (4): by reading the password file, or listing what is beside pgdata
    out = as_user(user, "cat", str(pg.passfile))
    assert out.returncode != 0 and "Permission denied" in out.stderr, out
    out = as_user(user, "ls", str(pg.data_dir))
    assert out.returncode != 0, out


async def test_the_database_superuser_cannot_read_the_key_passphrase(
        embedded: tuple[EmbeddedPostgres, Settings]) -> None:
    """COPY … PROGRAM runs commands as the server's user: run as root, that user is not the
    node's and reaches nothing of data_dir beyond pgdata."""
    pg, settings = embedded
    data_dir = settings.data_dir
    passphrase = data_dir / "key-passphrase"
    assert passphrase.exists() and (data_dir / "keys").is_dir()
    conn = await asyncpg.connect(pg.dsn)
    try:
        await conn.execute("CREATE TEMP TABLE out (line text)")
        await conn.execute("COPY out FROM PROGRAM 'id -un'")
        server_user = await conn.fetchval("SELECT line FROM out")
        if not ROOT:
            # A normal user's server is that user, as the node is: it reads what the node
            # reads, and the other tests show no one else gets in.
            assert server_user == pwd.getpwuid(os.geteuid()).pw_name
            return
        assert server_user == SYSTEM_USER
        # and none of root's groups came along
        await conn.execute("TRUNCATE out; COPY out FROM PROGRAM 'id -G'")
        assert await conn.fetchval("SELECT line FROM out") == str(
            pwd.getpwnam(SYSTEM_USER).pw_gid)
        for program in (f"cat {passphrase}", f"ls {data_dir}", f"ls {data_dir}/keys",
                        f"cat {pg.passfile}", f"sh -c 'echo x > {data_dir}/key-passphrase.new'",
                        f"mv {passphrase} {data_dir}/stolen"):
            with pytest.raises(asyncpg.PostgresError, match="program .* failed"):
                await conn.execute(f"COPY out FROM PROGRAM $${program}$$")
    finally:
        await conn.close()
    assert passphrase.exists() and not (data_dir / "key-passphrase.new").exists()
    info = data_dir.stat()
    assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o711


async def test_a_trusting_data_directory_of_an_older_idnode_is_switched_to_passwords() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="idnode-embedded-old-"))
    pg = EmbeddedPostgres(data_dir, free_port(), durable=False)
    try:
        # As idnode made it before: initdb --auth=trust, data_dir the server user's.
        pg.pgdata.mkdir()
        if ROOT:
            pg._prepare()
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        pg._run([_bin("initdb"), "-D", str(pg.pgdata), "-U", "postgres", "--auth=trust",
                 "--no-locale", "--encoding=UTF8"])
        assert "trust" in (pg.pgdata / "pg_hba.conf").read_text()

        dsn = pg.start()
        conn = await asyncpg.connect(dsn)
        try:
            methods = {r[0] for r in await conn.fetch(
                "SELECT auth_method FROM pg_hba_file_rules WHERE error IS NULL")}
        finally:
            await conn.close()
        assert methods == {"scram-sha-256"}
        if ROOT:
            assert data_dir.stat().st_uid == 0
            out = as_user(other_user(), _bin("psql"),
                          f"postgresql://postgres@127.0.0.1:{pg.port}/postgres", "-w",
                          "-XAtc", "SELECT 1")
            assert out.returncode != 0 and "password" in out.stderr, out
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://postgres:wrong@127.0.0.1:{pg.port}/postgres")
    finally:
        pg.destroy()


def test_a_normal_users_server_keeps_other_users_out(
        embedded: tuple[EmbeddedPostgres, Settings]) -> None:
    """The node run as a normal user (nobody here): its server is that user, and another
    local user (embedded_postgres here) gets neither the password nor the socket."""
    other_user()
    base = Path(tempfile.mkdtemp(prefix="idnode-embedded-user-"))
    entry = pwd.getpwnam("nobody")
    os.chown(base, entry.pw_uid, entry.pw_gid)
    os.chmod(base, 0o755)
    data_dir = base / "node"
    port = free_port()
    # The interpreter lives under /root (0700 here): it starts as root, imports what it
    # needs, and becomes nobody before it makes anything.
    start = ("import locale, os; from pathlib import Path; import idnode.embedded as e;"
             " e._bin_dir(); os.setgroups([]); os.setgid(%d); os.setuid(%d);"
             " os.environ['HOME'] = '/nonexistent';"
             " print(e.EmbeddedPostgres(Path(%r), %d, durable=False).start())"
             % (entry.pw_gid, entry.pw_uid, str(data_dir), port))
    try:
        out = subprocess.run([sys.executable, "-c", start], cwd="/", capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        dsn = out.stdout.strip().splitlines()[-1]
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        # the node's user gets in with the DSN alone
        ok = as_user("nobody", _bin("psql"), dsn, "-w", "-XAtc", "SELECT current_user")
        assert ok.stdout.strip() == "postgres", ok
        # another user does not: no password, no password file, no socket
        intruder = SYSTEM_USER
        tcp = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        out = as_user(intruder, _bin("psql"), tcp, "-w", "-XAtc", "SELECT 1")
        assert out.returncode != 0 and "password" in out.stderr, out
        out = as_user(intruder, _bin("psql"), dsn, "-w", "-XAtc", "SELECT 1")
        assert out.returncode != 0, out
        out = as_user(intruder, "cat", str(data_dir / "pgpass"))
        assert out.returncode != 0 and "Permission denied" in out.stderr, out
        out = as_user(intruder, _bin("psql"), "-h", str(data_dir / "pgdata"), "-p", str(port),
                      "-U", "postgres", "-w", "-XAtc", "SELECT 1")
        assert out.returncode != 0 and "Permission denied" in out.stderr, out
    finally:
        as_user("nobody", _bin("pg_ctl"), "-D", str(data_dir / "pgdata"), "-m", "immediate",
                "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
