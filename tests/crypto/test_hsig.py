"""HS_SIGNATURE / HS_CERT values: made and checked as hdllib's trust code does (the real
hdllib's verdicts are in tests/test_handle_signatures.py), in both forms."""
from __future__ import annotations

import time

import pytest

from idnode.api.handle import codec
from idnode.crypto import hsig
from idnode.crypto.keys import SigningKey

NOW = int(time.time())
HANDLE = "0.118.8/RICE-1"
PERMS_NODE = [{"perm": "derivedPrefixes", "handle": "0.NA/0.118"},
              {"perm": "handlesUnderThisPrefix", "handle": "0.NA/0.118"}]


@pytest.fixture(scope="module", params=["RS256", "SM2SM3"])
def world(request: pytest.FixtureRequest) -> dict[str, object]:
    alg = request.param
    anchor, node = SigningKey.generate(alg), SigningKey.generate(alg)
    root_ref, node_ref = "300:0.0/0.0", "300:0.NA/0.118"
    root_cert = hsig.certify(root_ref, anchor.jwk, [{"perm": "everything"}], root_ref, anchor,
                             iat=NOW, nbf=NOW - 60, exp=NOW + 3600)
    node_cert = hsig.certify(node_ref, node.jwk, PERMS_NODE, root_ref, anchor,
                             iat=NOW, nbf=NOW - 60, exp=NOW + 3600)
    return {"alg": alg, "anchor": anchor, "node": node, "root_cert": root_cert,
            "node_cert": node_cert, "node_ref": node_ref}


def record(w: dict[str, object], *, values: list[hsig.WireValue] | None = None,
           nbf: int = NOW - 60, exp: int = NOW + 600, handle: str = HANDLE,
           node_cert: str | None = None) -> list[hsig.WireValue]:
    base = values if values is not None else [
        hsig.WireValue(1, "product.name", "五常大米".encode()),
        hsig.WireValue(2, "URL", b"https://example.com/r/1", ttl=600),
        hsig.WireValue(3, "secret", b"x", permissions=hsig.PRIVATE)]
    cert = hsig.WireValue(2147483600, "HS_CERT", (node_cert or str(w["node_cert"])).encode())
    signed = [v for v in base + [cert] if v.public]
    sig = hsig.sign_values(handle, signed, w["node"], str(w["node_ref"]),  # type: ignore[arg-type]
                           chain=[f"2147483600:{HANDLE}", "400:0.0/0.0"], iat=NOW, nbf=nbf,
                           exp=exp)
    return base + [cert, hsig.WireValue(2147483601, "HS_SIGNATURE", sig.encode())]


def lookup_root(w: dict[str, object]) -> hsig.Lookup:
    def lookup(handle: str, index: int) -> list[hsig.WireValue]:
        if handle == "0.0/0.0":
            return [hsig.WireValue(400, "HS_CERT", str(w["root_cert"]).encode())]
        return []
    return lookup


def check(w: dict[str, object], values: list[hsig.WireValue], roots: list[dict[str, str]] | None = None
          ) -> hsig.SignatureCheck:
    anchor = w["anchor"]
    out = hsig.check_values(HANDLE, values, roots if roots is not None
                            else [anchor.jwk],  # type: ignore[attr-defined]
                            lookup_root(w), NOW)
    assert len(out) == 1
    return out[0]


def reason(c: hsig.SignatureCheck) -> str | None:
    return None if c.failure is None else c.failure.reason


def test_a_signed_record_checks_and_covers_its_public_values(world: dict[str, object]) -> None:
    values = record(world)
    c = check(world, values)
    assert c.failure is None, c.failure
    assert c.covered == {1, 2, 2147483600} and c.form == ("idis" if world["alg"] == "SM2SM3"
                                                          else "handle")
    assert hsig.unsigned(values, c.covered) == []
    assert c.chain == [f"HS_SIGNATURE 2147483601:{HANDLE}", f"HS_CERT 2147483600:{HANDLE}",
                       "HS_CERT 400:0.0/0.0"]


def test_each_tampering_names_what_fails(world: dict[str, object]) -> None:
    good = record(world)
    data = [v._replace(data=b"x") if v.index == 1 else v for v in good]
    assert reason(check(world, data)) == "content_mismatch"
    assert "value 1" in str(check(world, data).failure)
    ttl = [v._replace(ttl=1) if v.index == 2 else v for v in good]
    assert reason(check(world, ttl)) == "content_mismatch"
    perms = [v._replace(permissions=0x0F) if v.index == 2 else v for v in good]
    assert reason(check(world, perms)) == "content_mismatch"
    stamp = [v._replace(timestamp=12345) if v.index == 1 else v for v in good]
    assert reason(check(world, stamp)) is None  # timestamps are not covered (as in hdllib)
    missing = [v for v in good if v.index != 2]
    assert "signed value 2 is missing" in str(check(world, missing).failure)
    extra = good + [hsig.WireValue(7, "EMAIL", b"a@b")]
    c = check(world, extra)
    assert c.failure is None and [v.index for v in hsig.unsigned(extra, c.covered)] == [7]
    assert reason(check(world, record(world, exp=NOW - 1))) == "expired"
    assert reason(check(world, record(world, nbf=NOW + 60))) == "not_yet_valid"
    other = record(world, handle="0.118.8/OTHER")
    assert reason(check(world, other)) == "content_mismatch"
    stranger = SigningKey.generate(str(world["alg"]))
    assert reason(check(world, good, roots=[stranger.jwk])) == "wrong_anchor"
    flipped = [v._replace(data=v.data[:-3] + (b"AAA" if v.data[-3:] != b"AAA" else b"BBB"))
               if v.type == "HS_SIGNATURE" else v for v in good]
    assert reason(check(world, flipped)) in ("bad_signature", "malformed")


def test_certificate_faults_name_the_chain_link(world: dict[str, object]) -> None:
    anchor, node = world["anchor"], world["node"]
    expired = hsig.certify(str(world["node_ref"]), node.jwk, PERMS_NODE,  # type: ignore[attr-defined]
                           "300:0.0/0.0", anchor, iat=NOW - 99, nbf=NOW - 99, exp=NOW - 9)  # type: ignore[arg-type]
    c = check(world, record(world, node_cert=expired))
    assert reason(c) == "expired" and "chain link 1" in str(c.failure)
    narrow = hsig.certify(str(world["node_ref"]), node.jwk,  # type: ignore[attr-defined]
                          [{"perm": "derivedPrefixes", "handle": "0.NA/0.200"}], "300:0.0/0.0",
                          anchor, iat=NOW, nbf=NOW - 9, exp=NOW + 99)  # type: ignore[arg-type]
    assert reason(check(world, record(world, node_cert=narrow))) == "unauthorized"
    forged = hsig.certify(str(world["node_ref"]), node.jwk, PERMS_NODE,  # type: ignore[attr-defined]
                          "300:0.0/0.0", node, iat=NOW, nbf=NOW - 9, exp=NOW + 99)  # type: ignore[arg-type]
    c = check(world, record(world, node_cert=forged))
    assert reason(c) == "bad_signature" and "chain link 1" in str(c.failure)


def test_digest_part_is_the_protocols_value_encoding_from_the_ttl_type_on() -> None:
    for v in (hsig.WireValue(5, "URL", b"https://x", 600),
              hsig.WireValue(9, "HS_ADMIN", bytes(range(30)), 1, hsig.PRIVATE, 1, 77,
                             (("0.118/A", 300),))):
        wire = codec.HandleValue(v.index, v.type.encode(), v.data, v.ttl, v.ttl_type,
                                 v.timestamp, v.permissions,
                                 tuple((h.encode(), i) for h, i in v.references))
        assert hsig.digest_part(v) == codec.value_digest_part(wire)


def test_subtypes_and_permission_rules_follow_hdllib() -> None:
    assert hsig.has_type("HS_SIGNATURE.SM2", "HS_SIGNATURE")
    assert not hsig.has_type("HS_SIGNATURES", "HS_SIGNATURE")
    assert hsig.authorized([{"perm": "derivedPrefixes", "handle": "0.NA/0.118"}],
                           "0.118.8/X")
    assert not hsig.authorized([{"perm": "derivedPrefixes", "handle": "0.NA/0.118"}],
                               "0.118/X")
    assert hsig.authorized([{"perm": "handlesUnderThisPrefix", "handle": "0.NA/0.118"}],
                           "0.118/X")
    assert not hsig.authorized([{"perm": "handlesUnderThisPrefix", "handle": "0.NA/0.118"}],
                               "0.1180/X")
    assert hsig.authorized([{"perm": "everything"}], "1/2")
