"""Generation counters shared by the node processes of one host: a small file in shared
memory that every worker maps. A write bumps the counters of its keys after it commits and
before it returns; each worker's cached entry remembers the counter it was read under, and a
hit whose counter has moved is a miss. So a write that has returned is seen by every worker
of the host at once, without waiting for the NOTIFY that carries it to them (which still
empties their caches, and is what other hosts rely on).

The hit path reads one 8-byte counter; the slot of a key is computed when the entry is
filled (CRC-32: Python's own str hash differs from process to process)."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import stat
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

SLOTS = 4096
_SIZE = SLOTS * 8


def slot(key: str) -> int:
    return zlib.crc32(key.encode()) & (SLOTS - 1)


def path_for(identity: str) -> Path:
    """The file for the database `identity` (shared memory where the host has it)."""
    base = Path("/dev/shm")
    if not (base.is_dir() and os.access(base, os.W_OK)):
        base = Path(tempfile.gettempdir())
    digest = hashlib.sha256(identity.encode()).hexdigest()[:24]
    return base / f"idnode-gens-{os.geteuid()}-{digest}"


class HostGenerations:
    """The mapped counters. Writers serialise their bumps with a POSIX lock (a
    read-modify-write of one counter by two processes would otherwise lose one); readers read
    without a lock (an aligned 8-byte load). Every process holds a shared flock on the file
    while it has it mapped, and the last one to close it removes it (one file per database
    would otherwise be left behind for good)."""

    def __init__(self, path: Path) -> None:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                st = os.fstat(fd)
                # Anyone who may write these counters can make a worker serve what it should
                # not (or miss forever): only a private file of our own will do.
                if (st.st_uid != os.geteuid() or st.st_mode & 0o077
                        or not stat.S_ISREG(st.st_mode)):
                    raise PermissionError(f"{path} is not a private file of this user")
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    current = os.stat(path, follow_symlinks=False).st_ino
                except FileNotFoundError:
                    current = -1
                if current != st.st_ino:
                    # Its last user removed it between our open and our lock: start over.
                    os.close(fd)
                    continue
                if st.st_size < _SIZE:
                    fcntl.lockf(fd, fcntl.LOCK_EX)
                    try:
                        if os.fstat(fd).st_size < _SIZE:
                            os.ftruncate(fd, _SIZE)
                    finally:
                        fcntl.lockf(fd, fcntl.LOCK_UN)
                self._mm = mmap.mmap(fd, _SIZE)
            except BaseException:
                os.close(fd)
                raise
            break
        self._fd = fd
        self.path = path
        #: The counters, as the hot path indexes them.
        self.view = memoryview(self._mm).cast("q")

    @classmethod
    def open(cls, identity: str) -> HostGenerations | None:
        """The counters shared by every process on this host using the database `identity`;
        None (with a warning) where they cannot be had."""
        path = path_for(identity)
        try:
            return cls(path)
        except OSError as exc:
            log.warning("host cache coherence off (%s: %s): other workers of this host see a "
                        "write when its invalidation reaches them", path, exc)
            return None

    def bump(self, slots: Iterable[int]) -> None:
        view = self.view
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            for i in set(slots):
                view[i] += 1
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.view.release()
        self._mm.close()
        try:
            # No other process holds it: remove it (under our exclusive lock, so one that
            # opens it now waits, sees it gone and makes a new one).
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self._fd).st_ino:
                    os.unlink(self.path)
        except BlockingIOError:
            pass
        finally:
            os.close(self._fd)
