"""The README as a new user pastes it: every `sh` and `python` block, in order, against a fresh
`idnode serve --demo` (the node `make run` starts), in a directory laid out like a checkout
(`.venv`, `../shared`), so the README cannot drift from what works.

How a block is run:
- `sh` blocks run in bash, one after another, sharing exported variables (a block's
  `export -p` is sourced by the next). A command that exits non-zero fails the test, unless
  the README says it fails: its own line, or the comment line right after it, says FAIL,
  `error:` or DENIED.
- A comment line `# OK …` / `# FAIL …` (up to an ellipsis) must appear in the block's output.
- `python` blocks run with the checkout's Python.
- HTML comments steer the run between blocks: `<!-- readme: restart -->` restarts the node
  (as the README asks the reader to), `<!-- readme: stop -->` / `<!-- readme: start -->` stop
  and start it, `<!-- readme: skip -->` skips the next block (said why in the README).
- The node listens on free ports: the README's 8080, 50051 and 2641 are rewritten to them.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from idnode.embedded import free_port
from tests.interop import sdk_port, shared_dir

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"<!--\s*readme:\s*(\w+)")
EXPECTED_FAILURE = re.compile(r"#.*(\bFAIL\b|\berror:|DENIED)")
EXPECTED_OUTPUT = re.compile(r"^#\s*((?:OK|FAIL)\b[^…]*)")


@dataclass
class Block:
    lang: str
    text: str
    line: int
    marks: list[str] = field(default_factory=list)


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks of the README with the readme: marks that precede each."""
    out: list[Block] = []
    marks: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        m = MARK.search(lines[i])
        if m:
            marks.append(m.group(1))
        f = FENCE.match(lines[i])
        if f:
            start = i
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(f.group(1), "\n".join(body) + "\n", start + 1, marks))
            marks = []
        i += 1
    return out


@dataclass
class Demo:
    """`idnode serve --demo` in a checkout-like directory, on free ports."""

    work: Path
    env: dict[str, str]
    ports: dict[str, int]
    proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        args = [str(self.work / ".venv" / "bin" / "idnode"), "serve", "--demo",
                "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
                "--handle-port", str(self.ports["handle"]),
                "--metrics-port", str(self.ports["metrics"])]
        self.proc = subprocess.Popen(args, cwd=self.work, env=self.env, text=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if line.startswith("READY"):
                return
        raise AssertionError("the demo did not start:\n" + "".join(seen[-40:]))

    def stop(self) -> None:
        """As Ctrl-C does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def localise(self, text: str) -> str:
        """The README's default ports, as this demo listens."""
        text = text.replace("127.0.0.1:8080", f"127.0.0.1:{self.ports['http']}")
        text = text.replace("127.0.0.1:50051", f"127.0.0.1:{self.ports['grpc']}")
        text = text.replace("127.0.0.1:2641", f"127.0.0.1:{self.ports['handle']}")
        return re.sub(r"(127\.0\.0\.1) 2641\b", rf"\1 {self.ports['handle']}", text)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    work = tmp_path / "idnode"
    work.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "shared").symlink_to(shared_dir())
    for name in ("loadtest", "docs"):
        (work / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IDNODE_", "PYTEST", "HDL_"))}
    ports = {"http": free_port(), "grpc": free_port(), "handle": sdk_port(),
             "metrics": free_port()}
    # The CLI's own defaults (idnode register/resolve/hdl) follow the settings, as they would
    # follow a reader's configuration: the node's ports here.
    env.update(IDNODE_EMBEDDED_PG_PORT=str(free_port()), PYTHONUNBUFFERED="1",
               IDNODE_HTTP_PORT=str(ports["http"]), IDNODE_GRPC_PORT=str(ports["grpc"]),
               IDNODE_HANDLE_PORT=str(ports["handle"]), IDNODE_METRICS_PORT=str(ports["metrics"]))
    d = Demo(work, env, ports)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def run_sh(demo: Demo, block: Block, state: Path) -> None:
    script = demo.localise(block.text)
    lines = script.splitlines()
    header = ["set -o pipefail", f"[ -f {state} ] && . {state}",
              "trap 'echo \"__FAILED__ $LINENO\" >&2' ERR"]
    body = "\n".join([*header, *lines, f"export -p > {state}"]) + "\n"
    done = subprocess.run(["bash", "-c", body], cwd=demo.work, env=demo.env, text=True,
                          capture_output=True, timeout=300, check=False)
    out = done.stdout + done.stderr
    where = f"README.md block at line {block.line}"
    for m in re.finditer(r"__FAILED__ (\d+)", done.stderr):
        n = int(m.group(1)) - len(header)  # 1-based line of the block
        own = lines[n - 1] if 0 < n <= len(lines) else ""
        j = n  # 0-based index of the line after the failing one, past its continuations
        while j < len(lines) and lines[j - 1].rstrip().endswith("\\"):
            j += 1
        after = lines[j] if j < len(lines) else ""
        if not (EXPECTED_FAILURE.search(own) or EXPECTED_FAILURE.match(after.strip())):
            raise AssertionError(f"{where}: `{own.strip()}` failed:\n{out[-3000:]}")
    for ln in lines:
        m = EXPECTED_OUTPUT.match(ln.strip())
        if m:
            expected = m.group(1).strip()
            assert expected in out, f"{where}: expected `{expected}` in:\n{out[-3000:]}"


def run_python(demo: Demo, block: Block) -> None:
    done = subprocess.run([str(demo.work / ".venv" / "bin" / "python"), "-c",
                           demo.localise(block.text)], cwd=demo.work, env=demo.env, text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, (f"README.md python block at line {block.line} failed:\n"
                                  f"{done.stdout[-2000:]}{done.stderr[-3000:]}")


@pytest.mark.slow
def test_every_readme_block_works_when_pasted_in_order(demo: Demo, tmp_path: Path) -> None:
    state = tmp_path / "shell-state"
    ran = 0
    for block in blocks(README.read_text(encoding="utf-8")):
        if "skip" in block.marks or block.lang not in ("sh", "python"):
            continue
        for mark in block.marks:
            if mark in ("restart", "stop"):
                demo.stop()
            if mark in ("restart", "start"):
                demo.start()
        if block.lang == "sh":
            run_sh(demo, block, state)
        else:
            run_python(demo, block)
        ran += 1
    assert ran >= 10, f"only {ran} README blocks ran"
