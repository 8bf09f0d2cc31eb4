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


@dataclass
class NodeProcess:
    proc: subprocess.Popen[str]
    http: int
    grpc: int
    log: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_node(dsn: str, *, env: dict[str, str] | None = None, worker_id: str = "0",
               timeout: float = 30) -> NodeProcess:
    """Starts a node process and waits for its READY line."""
    full_env = dict(os.environ, IDNODE_LOG_LEVEL="WARNING", **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "idnode", "worker", "--dsn", dsn, "--worker-id", worker_id,
         "--http-port", "0", "--grpc-port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=full_env)
    log: list[str] = []
    ready = threading.Event()
    ports: dict[str, int] = {}

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            m = re.match(r"READY http=(\d+) grpc=(\d+)", line)
            if m:
                ports["http"], ports["grpc"] = int(m.group(1)), int(m.group(2))
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("node did not start:\n" + "".join(log))
    return NodeProcess(proc, ports["http"], ports["grpc"], log)


@dataclass
class TopProcess:
    proc: subprocess.Popen[str]
    grpc: int
    log: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        return NodeProcess.stop(self, sig, timeout)  # type: ignore[arg-type]


def start_top(dsn: str, port: int, timeout: float = 30) -> TopProcess:
    """Starts the reference top-level node on `port` and waits for its READY line."""
    env = dict(os.environ, IDNODE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "idnode", "top", "serve", "--database-url", dsn,
         "--grpc-port", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=env)
    log: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            if line.startswith("READY grpc="):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("top-level node did not start:\n" + "".join(log))
    return TopProcess(proc, port, log)
