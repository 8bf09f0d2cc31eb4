"""The real clients of the Handle/IDIS protocol as Python helpers: CAICT's national ID-SDK
(shared/idsdk/run.sh) and Handle.Net 9.2's hdllib (shared/handle-client/run.sh), each a JVM
printing JSON lines; plus the client network namespace that UDP tests with the ID-SDK need.

    steps = idsdk(host, port, "TCP", ("login", "0.118.8/ADMIN", "300", idsdk_key("rsa_priv.pem")),
                  ("create", "0.118.8/x", "URL=https://example.com"), ("lookup", "0.118.8/x"))
    out = hdlclient(host, port, "udp", "resolve", "0.118.8/x", env={"HDL_CERTIFY": True})

Why a namespace: over UDP the ID-SDK binds its local socket to the *server's* port number, so a
server and the SDK cannot share one network stack. `client_namespace()` makes a namespace joined
to the root one by a veth pair; the server (which must reach PostgreSQL on 127.0.0.1) stays in
the root namespace bound to `ns.server_ip`, the SDK runs with `netns=ns`.
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import random
import re
import socket
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Ours, never the read-only shared dir: the compiled ID-SDK probe, SDK logs, hdllib's config dir.
WORK_DIR = Path(tempfile.gettempdir()) / f"idnode-interop-{os.getuid()}"
IDSDK_BUILD = WORK_DIR / "idsdk-build"
#: Where the shared folder lies on a developer's machine, after $IDNODE_SHARED_DIR and the
#: folder beside the clone (where CI puts its copy).
FALLBACK_SHARED = (Path("/work/shared"),)

Step = str | Sequence[str]


# ----------------------------------------------------------------------------- shared tools

def shared_dir() -> Path:
    """$IDNODE_SHARED_DIR, else <repo>/../shared, else /work/shared: the first holding both
    clients. Fails the test naming what is missing where."""
    candidates: list[Path] = []
    if os.environ.get("IDNODE_SHARED_DIR"):
        candidates.append(Path(os.environ["IDNODE_SHARED_DIR"]))
    candidates += [REPO.parent / "shared", *FALLBACK_SHARED]
    wanted = ("idsdk/run.sh", "handle-client/run.sh")
    problems = []
    for c in candidates:
        lacking = [w for w in wanted if not (c / w).is_file()]
        if not lacking:
            return c
        problems.append(f"{c}: no {' or '.join(lacking)}")
    pytest.fail("the ID-SDK and hdllib clients were not found (set IDNODE_SHARED_DIR): "
                + "; ".join(problems), pytrace=False)


def idsdk_key(name: str) -> Path:
    """A login key shipped with the ID-SDK probe, e.g. rsa_priv.pem / rsa_pub.pem (PEM, which
    the SDK stores as HS_PUBKEY verbatim), rsa_pub.hdl.bin (Handle's binary encoding),
    dsa_priv.pem, negative/rsa_pkcs1.pem (README of shared/idsdk)."""
    path = shared_dir() / "idsdk" / "keys" / name
    if not path.is_file():
        pytest.fail(f"no ID-SDK key {path}", pytrace=False)
    return path


def _netns_prefix(netns: str | ClientNamespace | None) -> list[str]:
    if netns is None:
        return []
    name = netns.name if isinstance(netns, ClientNamespace) else netns
    return ["ip", "netns", "exec", name]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (concurrent pytest runs share WORK_DIR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_idsdk_compiled = False


def _compile_idsdk(run_sh: Path) -> None:
    """run.sh compiles Probe.java on first use; do it once under a lock so that two runs never
    load a half-written class. With no arguments the probe only prints its usage (exit 2)."""
    global _idsdk_compiled
    if _idsdk_compiled:
        return
    with _locked(WORK_DIR / "idsdk-build.lock"):
        env = {**os.environ, "IDSDK_BUILD": str(IDSDK_BUILD),
               "IDSDK_LOG": str(IDSDK_BUILD / "logs" / "compile.log")}
        done = subprocess.run([str(run_sh)], env=env, capture_output=True, text=True,
                              timeout=180, check=False)
    if not (IDSDK_BUILD / "classes" / "Probe.class").is_file():
        pytest.fail(f"could not compile the ID-SDK probe ({run_sh}, exit {done.returncode}): "
                    f"{done.stdout.strip()} {done.stderr.strip()[-2000:]}", pytrace=False)
    _idsdk_compiled = True


def _json_lines(out: str, what: str, stderr: str, code: int) -> list[dict[str, Any]]:
    lines = []
    for line in out.splitlines():
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{what} printed a line that is not JSON (exit {code}): "
                                 f"{line!r}; stderr: {stderr[-2000:]}") from None
    if not lines:
        raise AssertionError(f"{what} printed nothing (exit {code}); stderr: {stderr[-2000:]}")
    return lines


_calls = 0


def idsdk(host: str, port: int, transport: str, *steps: Step, timeout: float = 10,
          trusted: bool = False, certify: bool = False, rrdg: bool = False,
          netns: str | ClientNamespace | None = None) -> list[dict[str, Any]]:
    """Runs the national ID-SDK (one JVM, one channel) through `steps` and returns its JSON
    line per step: ok, responseCode, responseCodeName, values, error, response{version,
    opFlags, requestId, ...}, channel (first step). A step is a sequence of words, e.g.
    ("lookup", "0.118.8/x", "1,2", "URL"), ("login", ADMIN_ID, "300", KEYFILE),
    ("create", ID, "URL=https://x", "100:HS_ADMIN=0.118.8/ADMIN:300"); bare strings are
    single words. A failing connect ends the run after one line; every step is bounded by
    `timeout` (a timed-out step has "timeout": true and ends the run). A step that failed
    also carries "sdkLogFile" (the SDK's own log). Usage errors raise ValueError."""
    global _calls
    run_sh = shared_dir() / "idsdk" / "run.sh"
    _compile_idsdk(run_sh)
    words = [w for s in steps for w in ([s] if isinstance(s, str) else s)]
    flags = ["--timeout", str(timeout)] + ["--trusted"] * trusted + ["--certify"] * certify \
        + ["--rrdg"] * rrdg
    _calls += 1
    log = IDSDK_BUILD / "logs" / f"{os.getpid()}-{_calls}.log"
    args = [*_netns_prefix(netns), str(run_sh), *flags, host, str(port), transport.upper(),
            *map(str, words)]
    done = subprocess.run(args, env={**os.environ, "IDSDK_BUILD": str(IDSDK_BUILD),
                                     "IDSDK_LOG": str(log)},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                          timeout=timeout * (len(steps) + 1) + 30)
    lines = _json_lines(done.stdout, "the ID-SDK probe", done.stderr, done.returncode)
    if done.returncode == 2:
        raise ValueError(f"ID-SDK probe usage: {lines[-1].get('error')} (args {args[1:]})")
    if all(line.get("ok") for line in lines):
        log.unlink(missing_ok=True)
    else:
        for line in lines:
            if not line.get("ok"):
                line["sdkLogFile"] = str(log)
    return lines


def sdk_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on `host` that the ID-SDK accepts (its port check
    refuses many 5-digit ones): 4 digits, drawn at random so parallel runs rarely meet."""
    for _ in range(200):
        port = random.randint(2000, 9999)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind((host, port))
                u.bind((host, port))
                return port
        except OSError:
            continue
    raise RuntimeError(f"no free 4-digit port on {host}")


def _env_value(v: object) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def hdlclient(host: str, port: int, transport: str, command: str, *args: str | os.PathLike[str],
              env: Mapping[str, object] | None = None,
              netns: str | ClientNamespace | None = None) -> dict[str, Any]:
    """Runs one hdllib 9.2 request against ONE server (no global registry) and returns its
    JSON: ok, responseCode, responseCodeName, values, error, errorKind, handle, site,
    wire{requestId, signed, signatureVerified, requestDigest, responseFlags, ...}.
    Commands: resolve HANDLE [idx,..|-] [type,..|-]; siteinfo; create|add|modify HANDLE
    ADMIN_HANDLE ADMIN_INDEX PRIVKEY [idx:]type=data ...; remove ... idx[,idx]; delete ...;
    verify HANDLE ROOTS_FILE. `env` sets hdllib's knobs (shared/handle-client/NOTES.md):
    HDL_CERTIFY, HDL_SERVER_PUBKEY (a pubkey.bin: verify signatures), HDL_DIGEST,
    HDL_VERSION ("2.1".."2.11"), HDL_SESSION, HDL_TIMEOUT_MS, ... (bools become 1/0); HDL_*
    variables of the calling environment are not passed on. Usage errors raise ValueError."""
    run_sh = shared_dir() / "handle-client" / "run.sh"
    conf = WORK_DIR / "hdlclient-tmp"  # run.sh keeps hdllib's config dir in $TMPDIR
    conf.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("HDL_")}
    full_env = {**base, "TMPDIR": str(conf),
                **{k: _env_value(v) for k, v in (env or {}).items()}}
    argv = [*_netns_prefix(netns), str(run_sh), host, str(port), transport.lower(), command,
            *map(str, args)]
    done = subprocess.run(argv, env=full_env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=40, check=False)
    out = _json_lines(done.stdout, "the hdllib client", done.stderr, done.returncode)[-1]
    if done.returncode == 2:
        raise ValueError(f"hdllib client usage: {out.get('error')} (args {argv[1:]})")
    return out


def hdl_genkey(directory: str | os.PathLike[str], alg: str = "RSA",
               bits: int | None = None) -> tuple[Path, Path]:
    """A Handle key pair made by hdllib (unencrypted privkey.bin format; the public key in
    Handle's binary encoding, as HS_PUBKEY data): returns (private, public) paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    priv, pub = d / f"{alg.lower()}_priv.bin", d / f"{alg.lower()}_pub.bin"
    run_sh = shared_dir() / "handle-client" / "run.sh"
    conf = WORK_DIR / "hdlclient-tmp"
    conf.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HDL_")}
    done = subprocess.run([str(run_sh), "genkey", str(priv), str(pub), alg.upper(),
                           *([str(bits)] if bits else [])],
                          env={**env, "TMPDIR": str(conf)}, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=150, check=False)
    out = _json_lines(done.stdout, "hdllib genkey", done.stderr, done.returncode)[-1]
    if not out.get("ok") or not priv.is_file() or not pub.is_file():
        raise AssertionError(f"hdllib genkey failed: {out}")
    return priv, pub


# ----------------------------------------------------------------------------- namespace

NS_PREFIX = "idnode-cli-"        # namespaces: idnode-cli-<pid>
IF_PREFIX = "idnv"               # veth pair: idnv<pid>r (root side), idnv<pid>c (client side)
SUBNET = ipaddress.ip_network("10.213.9.0/24")  # cut into /30 links; shared/idsdk uses 10.213.7.0


@dataclass(frozen=True, slots=True)
class ClientNamespace:
    """A client network namespace linked to the root namespace by one veth pair (a /30)."""

    name: str
    server_ip: str     # root side: servers under test bind this address
    client_ip: str     # inside the namespace
    root_if: str
    client_if: str

    def exec_prefix(self) -> list[str]:
        """Prepend to a command to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]


def netns_problem() -> str | None:
    """Why a client namespace cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "no `ip` command (Debian package iproute2: apt-get install -y iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add / ip link add veth)"
    return None


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15,
                          check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_leftovers() -> None:
    """Namespaces and veths of runs whose process is gone (a crashed or killed run)."""
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(re.escape(NS_PREFIX) + r"(\d+)", name)
        if m and not _alive(int(m.group(1))):
            _ip("netns", "del", name, check=False)
    for m in re.finditer(rf"^\d+: ({re.escape(IF_PREFIX)}(\d+)r)[@:]", _ip("-o", "link", "show"),
                         re.MULTILINE):
        if not _alive(int(m.group(2))):
            _ip("link", "del", m.group(1), check=False)


def _free_link() -> tuple[str, str]:
    """The first /30 of SUBNET none of whose addresses is on a root-namespace interface."""
    used = set(re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", _ip("-o", "-4", "addr", "show")))
    for link in SUBNET.subnets(new_prefix=30):
        hosts = [str(h) for h in link.hosts()]
        if not used & {str(a) for a in link}:
            return hosts[0], hosts[1]
    raise RuntimeError(f"no free /30 left in {SUBNET} (leftover veths? `ip -o -4 addr`)")


def _wait_carrier(ns: ClientNamespace, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        root = _ip("-o", "link", "show", ns.root_if)
        cli = _ip("-n", ns.name, "-o", "link", "show", ns.client_if)
        if "LOWER_UP" in root and "LOWER_UP" in cli:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"veth {ns.root_if}/{ns.client_if} has no carrier: {root} {cli}")
        time.sleep(0.01)


@contextmanager
def client_namespace() -> Iterator[ClientNamespace]:
    """Makes one client namespace with a veth to the root namespace (by default root
    10.213.9.1/30, client 10.213.9.2/30; the next free /30 when another run holds it) and
    removes it afterwards, whatever happens. Leftovers of dead runs are removed first."""
    problem = netns_problem()
    if problem:
        raise RuntimeError(problem)
    pid = os.getpid()
    with _locked(WORK_DIR / "netns.lock"):
        _remove_leftovers()
        server_ip, client_ip = _free_link()
        ns = ClientNamespace(name=f"{NS_PREFIX}{pid}", server_ip=server_ip, client_ip=client_ip,
                             root_if=f"{IF_PREFIX}{pid}r", client_if=f"{IF_PREFIX}{pid}c")
        try:
            _ip("netns", "add", ns.name)
            _ip("link", "add", ns.root_if, "type", "veth", "peer", "name", ns.client_if,
                "netns", ns.name)
            _ip("addr", "add", f"{server_ip}/30", "dev", ns.root_if)
            _ip("link", "set", ns.root_if, "up")
            _ip("-n", ns.name, "addr", "add", f"{client_ip}/30", "dev", ns.client_if)
            _ip("-n", ns.name, "link", "set", ns.client_if, "up")
            _ip("-n", ns.name, "link", "set", "lo", "up")
        except BaseException:
            _teardown(ns)
            raise
    try:
        _wait_carrier(ns)
        yield ns
    finally:
        _teardown(ns)


def _teardown(ns: ClientNamespace) -> None:
    # Deleting the namespace destroys its veth end, and with it the pair.
    _ip("netns", "del", ns.name, check=False)
    if ns.root_if in _ip("-o", "link", "show", check=False):
        _ip("link", "del", ns.root_if, check=False)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def client_netns() -> Iterator[ClientNamespace]:
    """One client namespace for the whole run (see client_namespace). Without root or `ip`:
    a failure naming the reason under CI=true, a skip elsewhere."""
    problem = netns_problem()
    if problem:
        if _ci():
            pytest.fail(f"UDP interop tests need a client network namespace: {problem}",
                        pytrace=False)
        pytest.skip(f"UDP interop tests need a client network namespace: {problem}")
    with client_namespace() as ns:
        yield ns
