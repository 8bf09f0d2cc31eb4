"""Node processes for multi-process tests: `idnode worker` subprocesses on free ports."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class NodeProcess:
    proc: subprocess.Popen[str]
    http: int
    grpc: int
    log: list[str] = field(default_factory=list)
    handle: int = 0
    #: The operator listener (/metrics).
    metrics: int = 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        return stop_process(self.proc, sig, timeout)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 timeout: float = 15) -> int:
    """Signals a process still running and waits for it, killing it past `timeout`; its exit
    code (negative: the signal that ended it)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def start_node(dsn: str, *, env: dict[str, str] | None = None, worker_id: str = "0",
               timeout: float = 30) -> NodeProcess:
    """Starts a node process and waits for its READY line."""
    proc, log, m = _spawn(["worker", "--dsn", dsn, "--worker-id", worker_id, "--http-port", "0",
                           "--grpc-port", "0", "--handle-port", "0", "--metrics-port", "0"],
                          r"READY http=(\d+) grpc=(\d+) handle=(\d+) metrics=(\d+)", env, timeout)
    return NodeProcess(proc, int(m.group(1)), int(m.group(2)), log, int(m.group(3)),
                       int(m.group(4)))


def _spawn(args: list[str], ready_re: str, env: dict[str, str] | None, timeout: float
           ) -> tuple[subprocess.Popen[str], list[str], re.Match[str]]:
    """Runs `python -m idnode ARGS` and waits for the stderr line matching ready_re."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "idnode", *args], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, IDNODE_LOG_LEVEL="WARNING", **(env or {})))
    log: list[str] = []
    ready = threading.Event()
    found: list[re.Match[str]] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            m = re.match(ready_re, line)
            if m and not found:
                found.append(m)
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"idnode {args[0]} did not start:\n" + "".join(log))
    return proc, log, found[0]


@dataclass
class TopProcess:
    proc: subprocess.Popen[str]
    grpc: int
    log: list[str] = field(default_factory=list)
    #: The BMS's EPP port, and the escrow report listener's (0: off).
    epp: int = 0
    escrow: int = 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        return stop_process(self.proc, sig, timeout)


def start_top(dsn: str, port: int, timeout: float = 30, *, epp_port: int = 0,
              escrow_port: int = -1, env: dict[str, str] | None = None) -> TopProcess:
    """Starts the reference top-level node on `port` (its EPP listener on `epp_port`, by
    default a free one) and waits for its READY line."""
    proc, log, m = _spawn(["top", "serve", "--database-url", dsn, "--grpc-port", str(port),
                           "--epp-port", str(epp_port), "--escrow-port", str(escrow_port)],
                          r"READY grpc=\d+ epp=(\d+) escrow=(\d+)", env, timeout)
    return TopProcess(proc, port, log, int(m.group(1)), int(m.group(2)))
