"""Every SQL statement on pending Handle authentication challenges."""
from __future__ import annotations


from idnode.store.db import Database
from idnode.model.rows import PendingChallenge

# Expired challenges are swept by the insert that adds a new one: no timer needed, and the
# table never holds more than the challenges of the last `ttl` seconds.
_PUT = """
WITH swept AS (DELETE FROM hdl_challenges WHERE expires_at < now())
INSERT INTO hdl_challenges (session_id, nonce, digest, request, client, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT (session_id) DO NOTHING RETURNING 1"""
# Taken at most once: a replayed answer finds nothing.
_TAKE = """
DELETE FROM hdl_challenges WHERE session_id = $1 AND expires_at >= now()
RETURNING nonce, digest, request, client"""


class ChallengeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, session_id: int, nonce: bytes, digest: bytes, request: bytes,
                  client: str, ttl: float) -> bool:
        """False when the session id is taken (the caller draws another)."""
        return bool(await self.db.fetchval(_PUT, session_id, nonce, digest, request, client,
                                           float(ttl)))

    async def take(self, session_id: int) -> PendingChallenge | None:
        r = await self.db.fetchrow(_TAKE, session_id)
        if r is None:
            return None
        return PendingChallenge(bytes(r[0]), bytes(r[1]), bytes(r[2]), r[3])
