"""Self-test of tests/interop.py against the REAL Handle.Net 9.2 server (shared/handle-server),
so that the helpers are known good before they judge our own server. Not part of `make test`:
building Handle.Net needs its source, fetched once into /work/.mirror/MistraR+handle/repo
($IDNODE_HANDLE_NET_SRC), and the run takes about a minute.

    .venv/bin/python -m pytest -q tests/manual/handle_net_selftest.py

The server runs in the root namespace bound to the root side of the client namespace's veth;
hdllib talks to it from both sides over TCP and UDP, the ID-SDK over UDP from the namespace
(its local UDP port is the server's port) and over TCP from the root namespace. What Handle.Net
does not do for the ID-SDK (keep a TCP channel open, IDIS login 2001) is asserted as such: it
is what shared/handle-server/NOTES.md reports, and a change would mean the helpers misread.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop import (
    WORK_DIR,
    ClientNamespace,
    hdl_genkey,
    hdlclient,
    idsdk,
    idsdk_key,
    sdk_port,
    shared_dir,
)

SOURCE = Path(os.environ.get("IDNODE_HANDLE_NET_SRC", "/work/.mirror/MistraR+handle/repo"))
PREFIX = "99.999"
ADMIN = f"{PREFIX}/ADMIN"
DEMO = f"{PREFIX}/demo"
DESC = "中文标识解析测试：工业互联网标识"


@dataclass(frozen=True)
class HandleNet:
    host: str
    port: int
    pid: int
    admin_key: Path       # 300:99.999/ADMIN's private key (hdllib format)
    server_pubkey: Path   # the server's signing key, for HDL_SERVER_PUBKEY


@pytest.fixture(scope="module")
def handle_net(client_netns: ClientNamespace) -> Iterator[HandleNet]:
    if not (SOURCE / "HEAD").exists():
        pytest.fail(f"no Handle.Net source at {SOURCE} (fetch github:MistraR/handle, or set "
                    "IDNODE_HANDLE_NET_SRC)", pytrace=False)
    # The shared folder is read-only and its scripts write beside themselves: work on a copy.
    home = WORK_DIR / "handle-server"
    if not (home / "build" / "classpath.txt").is_file():
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(shared_dir() / "handle-server", home)
        for p in [home, *home.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
        src = home / "src"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(SOURCE), "archive", "HEAD"],
                                 capture_output=True, check=True, timeout=120)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True,
                       timeout=120)
        subprocess.run([str(home / "build.sh")], check=True, capture_output=True, timeout=300)
    svr = home / f"svr-{os.getpid()}"
    port = sdk_port(client_netns.server_ip)
    env = {**os.environ, "HDL_PORT": str(port), "HDL_BIND": client_netns.server_ip,
           "SVR_DIR": str(svr), "HDL_PREFIX": PREFIX,
           "HDLCLIENT": str(shared_dir() / "handle-client" / "run.sh")}
    started = subprocess.run([str(home / "start.sh")], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    pid_file = svr / "server.pid"
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield HandleNet(host=client_netns.server_ip, port=port, pid=int(pid_file.read_text()),
                        admin_key=home / "keys" / "admpriv.bin",
                        server_pubkey=svr / "pubkey.bin")
    finally:
        if pid_file.exists():  # stop.sh stops that PID only
            subprocess.run([str(home / "stop.sh")], env=env, timeout=60, check=False)
        shutil.rmtree(svr, ignore_errors=True)


def by_index(result: dict) -> dict[int, dict]:
    return {v["index"]: v for v in result["values"]}


# ------------------------------------------------------------------ hdllib

@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_hdllib_resolves_from_the_root_namespace(handle_net: HandleNet, transport: str) -> None:
    out = hdlclient(handle_net.host, handle_net.port, transport, "resolve", DEMO)
    assert out["ok"] and out["responseCode"] == 1, out
    values = by_index(out)
    assert values[1]["type"] == "URL" and values[1]["data"] == "https://example.org/handle-demo"
    assert values[2]["data"] == DESC
    assert out["wire"]["responseVersion"] == "2.11"


def test_hdllib_resolves_over_udp_from_the_namespace(handle_net: HandleNet,
                                                    client_netns: ClientNamespace) -> None:
    out = hdlclient(handle_net.host, handle_net.port, "udp", "resolve", DEMO, "2",
                    netns=client_netns)
    assert out["ok"] and [v["index"] for v in out["values"]] == [2], out


def test_hdllib_site_info_names_the_veth_address(handle_net: HandleNet) -> None:
    out = hdlclient(handle_net.host, handle_net.port, "tcp", "siteinfo")
    assert out["ok"], out
    [server] = out["site"]["servers"]
    assert server["address"] == handle_net.host
    # hdl-setup-server's layout: admin and query on TCP, query only on UDP.
    assert server["interfaces"] == [f"TCP/{handle_net.port}/adm+qry",
                                    f"UDP/{handle_net.port}/qry"], server


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_hdllib_verifies_signed_responses_and_rejects_a_wrong_key(
        handle_net: HandleNet, transport: str, tmp_path: Path) -> None:
    signed = hdlclient(handle_net.host, handle_net.port, transport, "resolve", DEMO,
                       env={"HDL_CERTIFY": True, "HDL_SERVER_PUBKEY": handle_net.server_pubkey})
    assert signed["ok"] and signed["wire"]["signatureVerified"], signed
    _, other_pub = hdl_genkey(tmp_path)
    forged = hdlclient(handle_net.host, handle_net.port, transport, "resolve", DEMO,
                       env={"HDL_CERTIFY": True, "HDL_SERVER_PUBKEY": other_pub})
    assert not forged["ok"] and forged["errorKind"] == "MISSING_OR_INVALID_SIGNATURE", forged


def test_hdllib_request_digest_and_older_protocol_versions(handle_net: HandleNet) -> None:
    rd = hdlclient(handle_net.host, handle_net.port, "tcp", "resolve", DEMO,
                   env={"HDL_DIGEST": True})
    assert rd["ok"] and rd["wire"]["requestDigest"], rd
    old = hdlclient(handle_net.host, handle_net.port, "tcp", "resolve", DEMO,
                    env={"HDL_VERSION": "2.5"})
    assert old["ok"] and old["wire"]["sentVersion"] == "2.5", old


def test_hdllib_unknown_handle_is_rc_100(handle_net: HandleNet) -> None:
    out = hdlclient(handle_net.host, handle_net.port, "udp", "resolve", f"{PREFIX}/no-such")
    assert not out["ok"] and out["responseCode"] == 100, out


def test_hdllib_admin_round_trip_with_challenge_response(handle_net: HandleNet,
                                                        tmp_path: Path) -> None:
    h, host, port = f"{PREFIX}/selftest-{os.getpid()}", handle_net.host, handle_net.port
    auth = (ADMIN, "300", handle_net.admin_key)
    created = hdlclient(host, port, "tcp", "create", h, *auth, "1:URL=https://example.org/a",
                        f"100:HS_ADMIN=300:{ADMIN}")
    assert created["ok"], created
    try:
        assert hdlclient(host, port, "tcp", "add", h, *auth, "2:EMAIL=a@example.org")["ok"]
        assert hdlclient(host, port, "tcp", "modify", h, *auth,
                         "1:URL=https://example.org/b")["ok"]
        assert hdlclient(host, port, "tcp", "remove", h, *auth, "2")["ok"]
        now = hdlclient(host, port, "udp", "resolve", h)
        assert {i: v["data"] for i, v in by_index(now).items() if i < 100} == {
            1: "https://example.org/b"}, now
        wrong_priv, _ = hdl_genkey(tmp_path)
        denied = hdlclient(host, port, "tcp", "add", h, ADMIN, "300", wrong_priv, "3:X=y")
        assert not denied["ok"] and denied["responseCode"] == 403, denied
    finally:
        gone = hdlclient(host, port, "tcp", "delete", h, *auth)
    assert gone["ok"], gone
    assert hdlclient(host, port, "tcp", "resolve", h)["responseCode"] == 100


def test_hdlclient_usage_error_raises(handle_net: HandleNet) -> None:
    with pytest.raises(ValueError, match="usage"):
        hdlclient(handle_net.host, handle_net.port, "tcp", "frobnicate")


# ------------------------------------------------------------------ national ID-SDK

def test_idsdk_over_udp_from_the_namespace(handle_net: HandleNet,
                                           client_netns: ClientNamespace) -> None:
    site, full, one, missing = idsdk(
        handle_net.host, handle_net.port, "UDP", "site", ("lookup", DEMO),
        ("lookup", DEMO, "1"), ("lookup", f"{PREFIX}/no-such"), netns=client_netns)
    assert site["ok"] and site["siteInfo"], site
    assert full["ok"] and by_index(full)[2]["data"] == DESC, full
    assert full["response"]["requestId"] > 0
    assert one["ok"] and [v["index"] for v in one["values"]] == [1], one
    assert not missing["ok"] and missing["responseCode"] == 100, missing


def test_idsdk_request_digest_over_udp(handle_net: HandleNet,
                                       client_netns: ClientNamespace) -> None:
    [out] = idsdk(handle_net.host, handle_net.port, "UDP", ("lookup", DEMO), rrdg=True,
                  netns=client_netns)
    assert out["ok"] and out["response"]["requestDigest"], out
    assert "RRDG" in out["response"]["opFlags"]


def test_idsdk_over_tcp_gets_site_info_then_handle_net_closes_the_channel(
        handle_net: HandleNet) -> None:
    # Handle.Net answers one request per TCP connection; the SDK keeps its channel socket.
    site, lookup = idsdk(handle_net.host, handle_net.port, "TCP", "site", ("lookup", DEMO))
    assert site["ok"] and site["channel"]["siteInfoFromServer"], site
    assert not lookup["ok"] and "未知响应码: 0" in lookup["error"], lookup
    assert Path(lookup["sdkLogFile"]).is_file()


def test_idsdk_login_is_unknown_to_handle_net(handle_net: HandleNet,
                                              client_netns: ClientNamespace) -> None:
    # IDIS opcode 2001: Handle.Net answers RC 2 with requestId -1, which the SDK ignores: it
    # either gives up after its 3 UDP tries (INTERNAL_ERROR) or waits past our timeout.
    login, *rest = idsdk(handle_net.host, handle_net.port, "UDP",
                         ("login", ADMIN, "300", idsdk_key("rsa_priv.pem")),
                         ("lookup", DEMO), timeout=3, netns=client_netns)
    assert not login["ok"] and login["responseCode"] is None, login
    assert login.get("timeout") or login["exceptionName"] == "INTERNAL_ERROR", login
    assert login["keyAlgorithm"] == "RSA" and Path(login["sdkLogFile"]).is_file()
    if login.get("timeout"):
        assert rest == []  # a timed-out step ends the run
    else:
        assert rest[0]["ok"], rest  # the channel still resolves


def test_idsdk_usage_error_raises(handle_net: HandleNet) -> None:
    with pytest.raises(ValueError, match="usage"):
        idsdk(handle_net.host, handle_net.port, "TCP", ("frobnicate",))
