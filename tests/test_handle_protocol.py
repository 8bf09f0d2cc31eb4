"""The Handle/IDIS protocol server, driven by tests/hdlwire (a client written from the wire
format): resolution, site info, flags, errors, bad input, limits, over TCP and UDP."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import struct
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from idnode.api.handle import codec
from idnode.crypto.hdlkeys import load_public_key
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from tests import hdlwire as w
from tests.conftest import make_settings

ID = "0.118.8/HDL-1"


@pytest.fixture
async def record(stub) -> str:  # type: ignore[no-untyped-def]
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="hdl-1", records=[
        pb.RecordInput(identifier=ID, values=[
            pb.Value(index=1, type="URL", data="https://example.com/p/1"),
            pb.Value(index=2, type="product.name", data="五常大米"),
            pb.Value(index=3, type="product.origin", data="黑龙江省五常市"),
            pb.Value(index=4, type="producer.contact", data="+86 451", private=True),
            pb.Value(index=5, type="blob", data="AAEC/w==", format="base64")])]))
    return ID


async def test_resolution_over_tcp_gives_the_public_values(node: Node, record: str) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        req = w.request(1, w.resolution_body(record), request_id=777)
        r = await c.call(req)
    finally:
        c.close()
    assert (r.rc, r.opcode, r.request_id) == (1, 1, 777)
    assert r.version == (2, 11)
    assert [(v[0], v[1], v[2]) for v in r.values[:4]] == [
        (1, "URL", b"https://example.com/p/1"), (2, "product.name", "五常大米".encode()),
        (3, "product.origin", "黑龙江省五常市".encode()), (5, "blob", b"\x00\x01\x02\xff")]
    # and the node's Handle-form certificate and signature (issue 12, docs/SIGNING.md)
    assert [(v[0], v[1]) for v in r.values[4:]] == [(2147483600, "HS_CERT"),
                                                    (2147483601, "HS_SIGNATURE")]
    assert all(v[4] == 0x0E for v in r.values)
    assert r.expiration > time.time()


async def test_one_tcp_connection_serves_many_requests_in_order(node: Node, record: str) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        # pipelined: all written before any is read
        await c.send(b"".join(w.request(1, w.resolution_body(record), request_id=i)
                              for i in range(1, 21)))
        ids = [(await c.recv()).request_id for _ in range(20)]
    finally:
        c.close()
    assert ids == list(range(1, 21))


async def test_resolution_over_udp(node: Node, record: str) -> None:
    packets = await asyncio.to_thread(w.udp_call, node.ports.handle,
                                      w.request(1, w.resolution_body(record), request_id=9))
    r = w.parse(w.reassemble(packets))
    assert (r.rc, r.request_id) == (1, 9)
    assert [v[0] for v in r.values] == [1, 2, 3, 5, 2147483600, 2147483601]


async def test_filters_by_index_and_type_including_subtypes(node: Node, record: str) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        by_index = await c.call(w.request(1, w.resolution_body(record, indexes=(1, 3))))
        by_type = await c.call(w.request(1, w.resolution_body(record, types=("PRODUCT.",))))
        none = await c.call(w.request(1, w.resolution_body(record, types=("EMAIL",))))
        private = await c.call(w.request(1, w.resolution_body(record, indexes=(4,))))
    finally:
        c.close()
    assert [v[0] for v in by_index.values] == [1, 3]
    assert [v[1] for v in by_type.values] == ["product.name", "product.origin"]
    assert none.rc == 200
    assert private.rc == 200  # the private value is not served anonymously


async def test_errors_carry_handle_response_codes(node: Node, record: str) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        missing = await c.call(w.request(1, w.resolution_body("0.118.8/NOPE")))
        foreign = await c.call(w.request(1, w.resolution_body("99.1/x")))
        foreign_idis = await c.call(w.idis(1, w.resolution_body("99.1/x")))
        invalid = await c.call(w.request(1, w.resolution_body("no-slash")))
        unknown_op = await c.call(w.request(77, b""))
        old = await c.call(w.request(1, w.resolution_body(record), version=(1, 5),
                                     suggest=(1, 5)))
    finally:
        c.close()
    assert missing.rc == 100 and "not registered" in missing.error
    assert foreign.rc == 301 and foreign_idis.rc == 100
    assert invalid.rc == 102
    assert unknown_op.rc == 5
    assert old.rc == 4


async def test_request_digest_is_of_the_request_as_received(node: Node, record: str) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        new = w.request(1, w.resolution_body(record), flags=w.RRDG)
        old = w.request(1, w.resolution_body(record), flags=w.RRDG, version=(2, 5),
                        suggest=(2, 5))
        r_new, r_old = await c.call(new), await c.call(old)
    finally:
        c.close()
    assert r_new.flags & w.RRDG and r_new.digest_type == 3
    assert r_new.digest == w.digest_of(new, 3)
    assert r_old.version == (2, 5) and r_old.digest_type == 2
    assert r_old.digest == w.digest_of(old, 2)
    assert [v[0] for v in r_new.values] == [1, 2, 3, 5, 2147483600, 2147483601]


async def test_site_info_lists_interfaces_and_the_key_that_signs_certified_answers(
        node: Node, record: str) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        site = await c.call(w.request(2, w.s("/")))
        cert = await c.call(w.request(1, w.resolution_body(record), flags=w.CERT,
                                      request_id=4242))
    finally:
        c.close()
    assert site.rc == 1
    b = site.body
    assert struct.unpack(">HBB", b[:4]) == (1, 2, 11)
    r = codec.Reader(b, 8)
    assert r.bytes_() == b""  # hash filter
    attrs = [(r.bytes_(), r.bytes_()) for _ in range(r.int4())]
    assert attrs[0][0] == b"desc"
    assert r.int4() == 1
    r.int4()
    address = r.buf[r.pos:r.pos + 16]
    r.pos += 16
    assert address == bytes(12) + bytes([127, 0, 0, 1])
    key = load_public_key(r.bytes_())
    interfaces = [(r.byte(), r.byte(), r.int4()) for _ in range(r.int4())]
    assert interfaces == [(3, 1, node.ports.handle), (2, 0, node.ports.handle),
                          (2, 2, node.ports.http)]
    r.end()
    # CT: an HS_SIGNED credential over versions, ids and the message (2.8+), with that key
    cr = codec.Reader(cert.credential, 4)
    assert cr.bytes_() == b"" and cr.int4() == 0 and cr.bytes_() == b"HS_SIGNED"
    section = codec.Reader(cr.bytes_())
    hash_name, signature = section.bytes_(), section.bytes_()
    assert hash_name == b"SHA-256"
    signed = bytes([2, 11, 2, 11]) + struct.pack(">iii", 0, 4242, 0) + cert.signed_part
    key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]


async def test_trusted_query_says_whether_the_record_verifies(node: Node, record: str) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        r = await c.call(w.idis(1, w.resolution_body(record), flags=w.TRUSTED_QUERY))
        plain = await c.call(w.idis(1, w.resolution_body(record)))
    finally:
        c.close()
    assert r.flags & 0x3 == 0x3
    assert plain.flags & 0x3 == 0


async def test_malformed_udp_is_dropped_and_the_server_keeps_serving(node: Node,
                                                                   record: str) -> None:
    port = node.ports.handle
    good = w.request(1, w.resolution_body(record), request_id=5)
    garbage = [b"\x02", good[:30], good[:16] + struct.pack(">i", 999) + good[20:],
               good[:20] + b"\x00" * 10, b"\xff" * 600]
    assert await asyncio.to_thread(w.udp_call, port, *garbage, timeout=0.5) == []
    # well framed, but its body is not what it claims: a protocol error, echoing the id
    bad_body = await asyncio.to_thread(
        w.udp_call, port, w.request(1, b"\x00\x00\x10\x00abc", request_id=6))
    r = w.parse(w.reassemble(bad_body))
    assert (r.rc, r.request_id) == (4, 6)
    r = w.parse(w.reassemble(await asyncio.to_thread(w.udp_call, port, good)))
    assert r.rc == 1 and r.request_id == 5


async def test_truncated_body_over_tcp_gets_a_protocol_error(node: Node, record: str) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        bad = await c.call(w.request(1, b"\x00\x00\x10\x00abc", request_id=31))
        ok = await c.call(w.request(1, w.resolution_body(record), request_id=32))
    finally:
        c.close()
    assert (bad.rc, bad.request_id) == (4, 31)
    assert (ok.rc, ok.request_id) == (1, 32)


async def test_silent_and_trickling_tcp_clients_are_dropped(dsn: str) -> None:
    node = Node(make_settings(handle_idle_timeout=1.0), dsn)
    await node.start()
    try:
        silent = await w.Tcp.open(node.ports.handle)
        trickle = await w.Tcp.open(node.ports.handle)
        req = w.request(1, w.resolution_body("0.118.8/x"))

        async def drip() -> None:
            for b in req:
                await trickle.send(bytes([b]))
                await asyncio.sleep(0.2)
        dripping = asyncio.ensure_future(drip())
        try:
            assert await silent.closed(timeout=4)
            assert await trickle.closed(timeout=4)
        finally:
            dripping.cancel()
            await asyncio.gather(dripping, return_exceptions=True)
            silent.close()
            trickle.close()
        # a client that keeps asking is not dropped
        busy = await w.Tcp.open(node.ports.handle)
        try:
            for _ in range(6):
                assert (await busy.call(req)).rc == 100
                await asyncio.sleep(0.4)
        finally:
            busy.close()
    finally:
        await node.stop(grace=1)


async def test_connections_past_the_bound_are_closed_at_once(dsn: str) -> None:
    node = Node(make_settings(handle_max_connections=2), dsn)
    await node.start()
    try:
        a, b = await w.Tcp.open(node.ports.handle), await w.Tcp.open(node.ports.handle)
        third = await w.Tcp.open(node.ports.handle)
        assert await third.closed(timeout=3)
        assert (await a.call(w.request(1, w.resolution_body("0.118.8/x")))).rc == 100
        a.close()
        b.close()
        third.close()
    finally:
        await node.stop(grace=1)


async def test_a_garbled_envelope_closes_the_connection_with_an_error(node: Node) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        await c.send(bytes([2, 11, 2, 11]) + struct.pack(">iiii", 0, 55, 0, 10_000_000))
        r = await c.recv()
        assert (r.rc, r.request_id) == (4, 55)
        assert await c.closed(timeout=3)
    finally:
        c.close()


async def test_udp_answers_past_the_rate_limit_are_dropped_or_cut_short(dsn: str) -> None:
    node = Node(make_settings(handle_rrl_rate=0.01, handle_rrl_burst=3, handle_rrl_slip=2), dsn)
    await node.start()
    try:
        reqs = [w.request(1, w.resolution_body("0.118.8/NOPE"), request_id=i)
                for i in range(1, 11)]
        packets = await asyncio.to_thread(w.udp_call, node.ports.handle, *reqs, timeout=1.0,
                                          expect=10)
    finally:
        await node.stop(grace=1)
    answers = [w.parse(p) for p in packets]
    full = [r for r in answers if r.rc == 100]
    slips = [r for r in answers if r.rc == 3]
    assert len(full) == 3  # the burst
    assert len(slips) == 3  # every second of the seven over the limit
    assert all(len(p) <= len(reqs[0]) for p, r in zip(packets, answers) if r.rc == 3)
    assert len(answers) == 6


async def test_login_floods_are_cut_off(node: Node) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        codes = []
        for i in range(30):
            # a fresh connection each time: a login already under way is not a flood
            conn = await w.Tcp.open(node.ports.handle)
            r = await conn.call(w.idis(2001, w.s("0.118.8/ADMIN") + struct.pack(">i", 300),
                                       request_id=i))
            conn.close()
            codes.append(r.rc)
    finally:
        c.close()
    assert codes[:20] == [402] * 20
    assert 3 in codes[20:]


async def test_an_answer_to_no_challenge_and_a_replayed_answer_are_refused(
        node: Node) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        create = w.request(100, w.values_body("0.118.8/R-1", w.value(1, "URL", "https://e.x")))
        challenge = await c.call(create)
        assert challenge.rc == 402 and challenge.session_id != 0
        answer_body = (w.s("HS_PUBKEY") + w.s("0.118.8/ADMIN") + struct.pack(">i", 300)
                       + w.s(w.s("SHA-256") + w.s(b"\x00" * 256)))
        wrong = await c.call(w.request(200, answer_body, session_id=challenge.session_id))
        replay = await c.call(w.request(200, answer_body, session_id=challenge.session_id))
        nothing = await c.call(w.request(200, answer_body, session_id=12345))
    finally:
        c.close()
    assert wrong.rc == 403
    assert replay.rc == 405 and nothing.rc == 405


async def test_idnode_hdl_resolves_over_tcp_and_udp(node: Node, record: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "idnode", "hdl", *args, "--server",
                               f"127.0.0.1:{node.ports.handle}"], capture_output=True,
                              text=True, timeout=30, check=False)
    tcp = await asyncio.to_thread(run, "resolve", record)
    udp = await asyncio.to_thread(run, "resolve", record, "--udp", "--type", "product.")
    missing = await asyncio.to_thread(run, "resolve", "0.118.8/NOPE")
    site = await asyncio.to_thread(run, "site")
    assert tcp.returncode == 0, tcp.stderr
    lines = tcp.stdout.splitlines()
    assert lines[:5] == [
        f"{record}: 6 value(s) over TCP", "1\tURL\thttps://example.com/p/1",
        "2\tproduct.name\t五常大米", "3\tproduct.origin\t黑龙江省五常市",
        "5\tblob\tbase64:AAEC/w=="]
    assert [line.split("\t")[:2] for line in lines[5:]] == [["2147483600", "HS_CERT"],
                                                           ["2147483601", "HS_SIGNATURE"]]
    assert udp.stdout.splitlines()[1:] == ["2\tproduct.name\t五常大米",
                                           "3\tproduct.origin\t黑龙江省五常市"]
    assert missing.returncode == 1 and "response code 100" in missing.stderr
    assert site.returncode == 0 and len(site.stdout) > 300


def hdllib_signed_bytes(version: tuple[int, int], session_id: int, request_id: int) -> bytes:
    """What hdllib's AbstractMessage.verifyMessage feeds the verifier before the message,
    transcribed from its Java (including the 2.6 offset bug)."""
    if version < (2, 6):
        return b""
    suggest = version >= (2, 8)
    buf = bytearray((4 if suggest else 2) + 12)
    buf[0], buf[1] = version
    offset = 2
    if suggest:
        buf[2], buf[3] = 2, 11
        offset = 4
    for value in (session_id, request_id, 0):
        buf[offset:offset + 4] = struct.pack(">i", value)
        offset = offset + 4 if version >= (2, 7) else 4  # writeInt returns 4, not offset+4
    return bytes(buf)


@pytest.mark.parametrize("version", [(2, 5), (2, 6), (2, 7), (2, 10), (2, 11)])
async def test_certified_answers_verify_as_hdllib_checks_them_in_each_version(
        node: Node, record: str, version: tuple[int, int]) -> None:
    c = await w.Tcp.open(node.ports.handle)
    try:
        site = await c.call(w.request(2, w.s("/")))
        r = await c.call(w.request(1, w.resolution_body(record), flags=w.CERT,
                                   request_id=31337, session_id=0x01020304, version=version,
                                   suggest=version))
    finally:
        c.close()
    key_reader = codec.Reader(site.body, 8)
    key_reader.bytes_()
    for _ in range(key_reader.int4()):
        key_reader.bytes_(), key_reader.bytes_()
    key_reader.int4(), key_reader.int4()
    key_reader.pos += 16
    key = load_public_key(key_reader.bytes_())
    assert r.version == version and r.rc == 1
    cr = codec.Reader(r.credential, 4)
    cr.bytes_(), cr.int4(), cr.bytes_()
    section = codec.Reader(cr.bytes_())
    section.bytes_()
    signature = section.bytes_()
    key.verify(signature, hdllib_signed_bytes(version, 0x01020304, 31337) + r.signed_part,  # type: ignore[union-attr]
               padding.PKCS1v15(), hashes.SHA256())
