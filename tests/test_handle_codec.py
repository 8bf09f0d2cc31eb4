"""The Handle wire codec: known-answer bytes (hdllib's own encodings), round trips, and every
malformed shape refused with a ProtocolError before anything is allocated for it."""
from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idnode.api.handle import codec
from idnode.api.handle.convert import value_in, wire_value
from idnode.core.errors import InvalidValue
from idnode.core.records import Value
from tests import hdlwire as w

# What hdllib 9.2.0 sends to resolve 99.999/demo (shared/handle-server/load.py, checked there
# byte for byte against a capture of the real client): envelope 2.11 suggesting 2.11, flags
# AT|CA|PO, serial 1, no indexes, no types, an empty credential.
HDLLIB_RESOLVE = bytes.fromhex(
    "020b020b" "00000000" "00003039" "00000000" "00000033"
    "00000001" "00000000" "89000000" "0001" "00" "00" "6a7c0000" "00000017"
    "0000000b" + b"99.999/demo".hex() + "00000000" "00000000"
    "00000000")


def test_decodes_hdllibs_resolution_request() -> None:
    env = codec.decode_envelope(HDLLIB_RESOLVE)
    assert (env.major, env.minor, env.suggested, env.request_id, env.length) == \
        (2, 11, (2, 11), 12345, 51)
    req = codec.decode_request(env, HDLLIB_RESOLVE[20:])
    assert req.opcode == 1 and req.flags == 0x89000000 and req.serial == 1
    assert req.has(codec.FLAG_PUBL) and not req.has(codec.FLAG_RRDG)
    assert req.credential == b""
    assert req.signed_part == HDLLIB_RESOLVE[20:20 + 24 + 23]
    res = codec.decode_resolution(req.body)
    assert res == codec.Resolution(b"99.999/demo", (), ())


def test_the_sdks_envelope_suggests_a_version_in_the_flag_byte() -> None:
    env = codec.decode_envelope(w.idis(1, w.resolution_body("a/b")))
    assert (env.major, env.minor, env.suggested) == (2, 3, (2, 10))
    assert codec.answer_version(env) == (2, 10)
    # no suggestion: the client reads what it writes
    env = codec.decode_envelope(bytes([2, 5, 0, 0]) + bytes(16))
    assert env.suggested == (2, 5) and codec.answer_version(env) == (2, 5)
    # the truncated flag is not mistaken for a version
    env = codec.decode_envelope(bytes([2, 11, 0x22, 11]) + bytes(16))
    assert env.truncated and env.suggested == (2, 11)
    # a newer client is answered in ours
    env = codec.decode_envelope(bytes([2, 11, 2, 12]) + bytes(16))
    assert codec.answer_version(env) == codec.VERSION


def test_response_header_and_envelope_bytes() -> None:
    reply = codec.Reply(1, codec.RC_HANDLE_NOT_FOUND, codec.error_body("x"),
                        flags=codec.FLAG_PUBL, digest=(codec.HASH_SHA256, bytes(range(32))))
    msg = codec.encode_message(reply, (2, 10), serial=7, recursion=0, expiration=1_700_000_000)
    assert msg[:24] == struct.pack(">iiIHBBii", 1, 100, codec.FLAG_PUBL | codec.FLAG_RRDG, 7,
                                   0, 0, 1_700_000_000, 1 + 32 + 5)
    assert msg[24:] == b"\x03" + bytes(range(32)) + b"\x00\x00\x00\x01x"
    framed = codec.frame((2, 10), 5, 99, msg)
    assert framed[:20] == struct.pack(">BBBBiiii", 2, 10, 2, 11, 5, 99, 0, len(msg) + 4)
    assert framed[-4:] == b"\x00\x00\x00\x00"


def test_old_versions_get_the_digest_they_know() -> None:
    part = b"request"
    assert codec.request_digest((2, 10), part) == (3, hashlib.sha256(part).digest())
    assert codec.request_digest((2, 6), part) == (2, hashlib.sha1(part).digest())
    assert codec.request_digest((2, 0), part) == (0, hashlib.md5(part).digest())
    reply = codec.Reply(1, 1, b"", digest=codec.request_digest((2, 0), part))
    # before 2.1 there is no RD flag and the digest is a length-prefixed string
    msg = codec.encode_message(reply, (2, 0), serial=0, recursion=0, expiration=0)
    assert struct.unpack(">I", msg[8:12])[0] & codec.FLAG_RRDG == 0


def test_udp_responses_are_split_into_492_byte_payloads() -> None:
    msg = bytes(range(256)) * 5  # 1280 bytes, 1284 with the credential length
    packets = codec.split_udp(codec.frame((2, 11), 0, 42, msg))
    assert [len(p) for p in packets] == [512, 512, 20 + 1284 - 984]
    for n, p in enumerate(packets):
        env = codec.decode_envelope(p)
        assert (env.request_id, env.message_id, env.length, env.truncated) == (42, n, 1284, True)
    assert w.reassemble(packets)[20:] == msg + b"\x00\x00\x00\x00"
    single = codec.split_udp(codec.frame((2, 11), 0, 1, b"x" * 100))
    assert len(single) == 1 and not codec.decode_envelope(single[0]).truncated


def test_site_record_matches_hdllibs_layout() -> None:
    iface = codec.Interface(codec.ST_ADMIN_AND_QUERY, codec.SP_TCP, 2641)
    rec = codec.encode_site(3, [codec.Server(1, bytes(12) + bytes([127, 0, 0, 1]), b"KEY",
                                             (iface,))], [(b"desc", b"d")])
    assert rec == (struct.pack(">HBBHBB", 1, 2, 11, 3, 0x80, 0) + w.s(b"")
                   + struct.pack(">i", 1) + w.s(b"desc") + w.s(b"d")
                   + struct.pack(">ii", 1, 1) + bytes(12) + bytes([127, 0, 0, 1]) + w.s(b"KEY")
                   + struct.pack(">iBBi", 1, 3, 1, 2641))


def test_admin_record_round_trip() -> None:
    data = codec.encode_admin(b"0.118.8/ADMIN", 300)
    assert data == b"\x0f\xff" + w.s(b"0.118.8/ADMIN") + struct.pack(">i", 300)
    assert codec.decode_admin(data) == (0x0FFF, b"0.118.8/ADMIN", 300)


def test_values_round_trip_through_the_wire() -> None:
    raw = w.value(7, "URL", "https://e.x/1", ttl=3600, perms=0x0E)
    r = codec.Reader(raw)
    hv = codec.read_value(r)
    r.end()
    assert hv == codec.HandleValue(7, b"URL", b"https://e.x/1", 3600, 0, 0, 0x0E)
    assert codec.encode_value(hv) == raw
    assert codec.value_digest_part(hv) == raw[8:]


def test_value_data_keeps_its_bytes_text_or_not() -> None:
    text = value_in(codec.HandleValue(1, b"product.name", "五常大米".encode()), 0)
    assert (text.format, text.data) == ("string", "五常大米")
    binary = value_in(codec.HandleValue(100, b"HS_ADMIN", codec.encode_admin(b"a/b", 300)), 0)
    assert binary.format == "base64"
    for v in (text, binary):
        again = codec.read_value(codec.Reader(wire_value(v._replace(
            timestamp="2026-12-01T00:00:00Z"))))
        assert again.data == (b"\xe4\xba\x94\xe5\xb8\xb8\xe5\xa4\xa7\xe7\xb1\xb3" if v is text
                              else codec.encode_admin(b"a/b", 300))
        assert again.timestamp == 1_796_083_200  # 2026-12-01T00:00:00Z
    private = value_in(codec.HandleValue(2, b"x", b"y", permissions=0x0C), 0)
    assert private.private
    assert wire_value(Value(2, "x", "y", private=True))[13] == 0x0C


def test_value_ttls_are_relative_and_positive() -> None:
    assert value_in(codec.HandleValue(1, b"t", b"d", ttl=0), 0).ttl == 1
    absolute = value_in(codec.HandleValue(1, b"t", b"d", ttl=1_000_100, ttl_type=1), 0,
                        now=1_000_000)
    assert absolute.ttl == 100
    with pytest.raises(InvalidValue, match="negative"):
        value_in(codec.HandleValue(1, b"t", b"d", ttl=-5), 0)
    with pytest.raises(InvalidValue, match="ttl type"):
        value_in(codec.HandleValue(1, b"t", b"d", ttl_type=9), 0)
    with pytest.raises(InvalidValue, match="references"):
        value_in(codec.HandleValue(1, b"t", b"d", references=((b"a/b", 1),)), 0)
    with pytest.raises(InvalidValue, match="UTF-8"):
        value_in(codec.HandleValue(1, b"\xff", b"d"), 0)


@pytest.mark.parametrize("body, problem", [
    (b"", "wanted"),
    (b"\x00\x00\x00\x05ab", "wanted"),
    (struct.pack(">i", -1), "wanted"),
    (struct.pack(">i", 5000) + b"x" * 5000, "at most 2048"),
    (w.s("a/b") + struct.pack(">i", 3) + b"\x00" * 4, "wanted"),
    (w.s("a/b") + struct.pack(">i", 10_000_000), "a count of"),
    (w.s("a/b") + struct.pack(">ii", 0, 0) + b"junk", "unexpected bytes"),
])
def test_malformed_resolution_bodies(body: bytes, problem: str) -> None:
    with pytest.raises(codec.ProtocolError, match=problem):
        codec.decode_resolution(body)


@pytest.mark.parametrize("message, problem", [
    (b"\x00" * 10, "no room for a header"),
    (struct.pack(">iiIHBBii", 1, 0, 0, 0, 0, 0, 0, 100) + b"x", "overruns"),
    (struct.pack(">iiIHBBii", 1, 0, 0, 0, 0, 0, 0, -4) + b"x", "overruns"),
    (struct.pack(">iiIHBBii", 1, 1, 0, 0, 0, 0, 0, 0), "response code"),
    (struct.pack(">iiIHBBii", 1, 0, 0, 0, 0, 0, 0, 0) + b"\x00\x00", "truncated credential"),
    (struct.pack(">iiIHBBii", 1, 0, 0, 0, 0, 0, 0, 0) + struct.pack(">i", 9) + b"x",
     "credential length"),
])
def test_malformed_messages(message: bytes, problem: str) -> None:
    env = codec.decode_envelope(bytes([2, 11, 2, 11]) + struct.pack(">iiii", 0, 1, 0,
                                                                    len(message)))
    with pytest.raises(codec.ProtocolError, match=problem):
        codec.decode_request(env, message)


def test_oversized_and_negative_envelope_lengths() -> None:
    for length in (-1, codec.MAX_MESSAGE + 1):
        with pytest.raises(codec.ProtocolError, match="message length"):
            codec.decode_envelope(bytes([2, 11, 2, 11]) + struct.pack(">iiii", 0, 1, 0, length))
    with pytest.raises(codec.ProtocolError, match="envelope"):
        codec.decode_envelope(b"\x02\x0b")


def test_challenge_answers_as_hdllib_writes_them() -> None:
    signed = w.s("SHA-256") + w.s(b"\x01" * 256)
    body = w.s("HS_PUBKEY") + w.s("0.118.8/ADMIN") + struct.pack(">i", 300) + w.s(signed)
    a = codec.decode_challenge_answer(body)
    assert a == codec.ChallengeAnswer(b"HS_PUBKEY", b"0.118.8/ADMIN", 300, b"SHA-256",
                                      b"\x01" * 256)
    with pytest.raises(codec.ProtocolError):
        codec.decode_challenge_answer(body[:-3])


def test_a_request_packed_for_later_is_the_same_request() -> None:
    raw = w.request(104, w.values_body("a/b", w.value(1, "URL", "x")), request_id=77,
                    session_id=9, flags=codec.FLAG_RRDG)
    req = codec.decode_request(codec.decode_envelope(raw), raw[20:])
    again = codec.unpack_request(codec.pack_request(req))
    assert again == req


@given(st.binary(max_size=300))
def test_no_input_crashes_the_decoders(data: bytes) -> None:
    for decode in (codec.decode_resolution, codec.decode_values_request, codec.decode_remove,
                   codec.decode_handle, codec.decode_login, codec.decode_challenge_answer):
        try:
            decode(data)
        except codec.ProtocolError:
            pass
    try:
        env = codec.decode_envelope(data)
        codec.decode_request(env, data[20:20 + max(env.length, 0)])
    except codec.ProtocolError:
        pass
