"""Signing and verification: RFC 8785 canonical JSON, RFC 7515 JWS, RFC 6962 Merkle trees,
batch signatures with inclusion proofs, and key statements certifying node keys."""
