"""The interop tooling itself (tests/interop.py), without a Handle server: the client network
namespace gives a client the server's UDP port number (what the ID-SDK does), the Java clients
answer in JSON, and a missing shared folder is named. Their check against the real Handle.Net
9.2 server is tests/manual/handle_net_selftest.py."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests import interop
from tests.interop import ClientNamespace, hdlclient, idsdk


def closed_port() -> int:
    """A 4-digit port nothing listens on (the ID-SDK's port check refuses some 5-digit ones)."""
    for port in range(3901, 3999):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no closed port")


def test_the_namespace_lets_a_client_bind_the_servers_udp_port(
        client_netns: ClientNamespace) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((client_netns.server_ip, 0))
    server.settimeout(10)
    port = server.getsockname()[1]

    def echo() -> None:
        data, peer = server.recvfrom(100)
        server.sendto(data.upper(), peer)

    t = threading.Thread(target=echo)
    t.start()
    # The ID-SDK's own move: its local UDP socket takes the server's port number.
    client = (f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              f"s.bind(('{client_netns.client_ip}', {port})); s.settimeout(10); "
              f"s.sendto(b'ping', ('{client_netns.server_ip}', {port})); print(s.recv(100))")
    try:
        done = subprocess.run([*client_netns.exec_prefix(), sys.executable, "-c", client],
                              capture_output=True, text=True, timeout=30, check=False)
    finally:
        t.join(15)
        server.close()
    assert done.stdout.strip() == "b'PING'", done.stderr
    assert client_netns.name in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                               text=True, check=True).stdout


def test_the_java_clients_report_a_closed_port_in_json() -> None:
    port = closed_port()
    [sdk] = idsdk("127.0.0.1", port, "TCP", ("lookup", "0.118.8/x"), timeout=5)
    assert not sdk["ok"] and sdk["stage"] == "connect", sdk
    assert sdk["exceptionName"] == "LONGCONNSOCKET_CREATE_FAILED"
    assert Path(sdk["sdkLogFile"]).is_file()
    hdl = hdlclient("127.0.0.1", port, "tcp", "resolve", "0.118.8/x")
    assert not hdl["ok"] and hdl["errorKind"] == "CANNOT_CONNECT_TO_SERVER", hdl


def test_usage_errors_raise() -> None:
    with pytest.raises(ValueError, match="unknown command"):
        idsdk("127.0.0.1", closed_port(), "TCP", ("frobnicate",))
    with pytest.raises(ValueError, match="unknown command"):
        hdlclient("127.0.0.1", closed_port(), "tcp", "frobnicate")


def test_a_missing_shared_folder_is_named(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("IDNODE_SHARED_DIR", str(tmp_path / "given"))
    monkeypatch.setattr(interop, "REPO", tmp_path / "clone")
    monkeypatch.setattr(interop, "FALLBACK_SHARED", (tmp_path / "nowhere",))
    (tmp_path / "given" / "idsdk").mkdir(parents=True)
    (tmp_path / "given" / "idsdk" / "run.sh").write_text("")
    with pytest.raises(pytest.fail.Exception) as failed:
        interop.shared_dir()
    message = str(failed.value)
    assert f"{tmp_path}/given: no handle-client/run.sh" in message
    assert f"{tmp_path}/shared: no idsdk/run.sh or handle-client/run.sh" in message
    assert "IDNODE_SHARED_DIR" in message
