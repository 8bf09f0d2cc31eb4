"""Signing and verification: RFC 8785 canonical JSON (jcs), RFC 7515 JWS (jws), keys and key
sets (keys), RFC 6962 Merkle trees (merkle, mlog), batch signatures with inclusion proofs
(batch) and key statements certifying node keys (certify); failures are errors.VerificationError."""
