"""Every SQL statement on the Handle-form signatures of record versions (hs_signatures)."""
from __future__ import annotations


from idnode.store.db import Database
from idnode.model.rows import HsRow

_GET = """
SELECT alg, version, record_created, cert_id, jws, expires_at FROM hs_signatures
WHERE prefix = $1 AND suffix = $2"""
_GET_MANY = """
SELECT s.prefix, s.suffix, s.alg, s.version, s.record_created, s.cert_id, s.jws, s.expires_at
FROM unnest($1::text[], $2::text[]) AS k(prefix, suffix)
JOIN hs_signatures s ON s.prefix = k.prefix AND s.suffix = k.suffix"""
# A row is replaced by the signature of a newer version, of a newer registration of the same
# identifier, or a fresher one of the same version; never by an older one (two workers may
# sign the same version at once: either's signature is good, the later one stays).
_PUT = """
INSERT INTO hs_signatures AS s (prefix, suffix, alg, version, record_created, cert_id, jws,
                                expires_at)
SELECT $1, $2, * FROM unnest($3::text[], $4::bigint[], $5::timestamptz[], $6::text[],
                             $7::text[], $8::timestamptz[])
ON CONFLICT (prefix, suffix, alg) DO UPDATE
SET version = EXCLUDED.version, record_created = EXCLUDED.record_created,
    cert_id = EXCLUDED.cert_id, jws = EXCLUDED.jws, expires_at = EXCLUDED.expires_at
WHERE (s.record_created, s.version, s.expires_at)
      <= (EXCLUDED.record_created, EXCLUDED.version, EXCLUDED.expires_at)"""


class HsSignatureStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, prefix: str, suffix: str) -> dict[str, HsRow]:
        """The kept signatures of an identifier, by algorithm."""
        rows = await self.db.fetch(_GET, prefix, suffix)
        return {r[0]: HsRow(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows}

    async def get_many(self, keys: list[tuple[str, str]]
                       ) -> dict[tuple[str, str], dict[str, HsRow]]:
        """The kept signatures of several identifiers, (prefix, suffix) -> by algorithm; one
        query (identifiers with none are absent)."""
        out: dict[tuple[str, str], dict[str, HsRow]] = {}
        if not keys:
            return out
        prefixes, suffixes = zip(*keys)
        for r in await self.db.fetch(_GET_MANY, list(prefixes), list(suffixes)):
            out.setdefault((r[0], r[1]), {})[r[2]] = HsRow(r[2], r[3], r[4], r[5], r[6], r[7])
        return out

    async def put(self, prefix: str, suffix: str, rows: list[HsRow]) -> None:
        """Keeps the signatures of one identifier (one per form), in one statement."""
        await self.db.fetchval(_PUT, prefix, suffix, [r.alg for r in rows],
                               [r.version for r in rows], [r.record_created for r in rows],
                               [r.cert_id for r in rows], [r.jws for r in rows],
                               [r.expires_at for r in rows], timeout=self.db.limits.write)
