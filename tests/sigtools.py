"""Second implementations of the Handle and IDIS signature forms, for tests: the ID-SDK's own
digest, SM2 and SM3 code (tests/vectors/idsdk/IdsdkSigCheck.java against shared/idsdk/lib) and
hdllib's offline trust verifier (`shared/handle-client/run.sh verify-json`)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.interop import WORK_DIR, _json_lines, _locked, shared_dir

DRIVER = Path(__file__).resolve().parent / "vectors" / "idsdk" / "IdsdkSigCheck.java"
BUILD = WORK_DIR / "idsdk-sigcheck"


def _classpath() -> str:
    lib = shared_dir() / "idsdk" / "lib"
    bc = Path("/usr/share/java/bcprov.jar")
    if not bc.is_file():
        pytest.fail("no /usr/share/java/bcprov.jar (Debian package libbcprov-java)",
                    pytrace=False)
    return f"{BUILD}:{lib}/*:{bc}"


def _compile() -> None:
    if shutil.which("javac") is None:
        pytest.fail("no javac (Debian package default-jdk-headless)", pytrace=False)
    with _locked(WORK_DIR / "idsdk-sigcheck.lock"):
        cls = BUILD / "IdsdkSigCheck.class"
        if cls.is_file() and cls.stat().st_mtime >= DRIVER.stat().st_mtime:
            return
        BUILD.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["javac", "-nowarn", "-encoding", "UTF-8", "-cp", _classpath(),
                               "-d", str(BUILD), str(DRIVER)], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            pytest.fail(f"could not compile {DRIVER.name}: {done.stderr[-2000:]}",
                        pytrace=False)


def idsdk_check(command: str, request: dict[str, Any]) -> dict[str, Any]:
    """Runs one IdsdkSigCheck command (digests, sm3, sm2verify, sm2sign, sm2jws)."""
    _compile()
    # The SDK's jar carries a log4j.properties writing to the relative path d:/temp/: run
    # from our build directory, so its logs land there and not in the caller's directory.
    done = subprocess.run(["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp",
                           _classpath(), "IdsdkSigCheck", command],
                          input=json.dumps(request), capture_output=True, text=True,
                          cwd=BUILD, timeout=60, check=False)
    return _json_lines(done.stdout, "IdsdkSigCheck", done.stderr, done.returncode)[-1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hdl_verify_json(records: Path, roots: Path, handle: str | None = None) -> dict[str, Any]:
    """hdllib's HandleRecordTrustVerifier, offline, on a records file (Handle REST JSON: one
    record, or the bootstrap_handles shape) with trust roots (shared/handle-client/VERIFY.md)."""
    run_sh = shared_dir() / "handle-client" / "run.sh"
    conf = WORK_DIR / "hdlclient-tmp"
    conf.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HDL_")}
    done = subprocess.run([str(run_sh), "verify-json", str(records), str(roots),
                           *([handle] if handle else [])],
                          env={**env, "TMPDIR": str(conf)}, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=150, check=False)
    return _json_lines(done.stdout, "hdllib verify-json", done.stderr, done.returncode)[-1]
