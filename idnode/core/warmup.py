"""The hot cache warmed at a process's start (cache_warm_top, cache_warm_window): the records
consumers scanned most of late, so a restarted or added worker does not send its whole hot
set to the database at once, and their kept Handle-form signatures with them, so their
Handle REST reads are cache hits from the first."""
from __future__ import annotations

import logging

from idnode.core.handleform import HandleForms
from idnode.core.ports import ScanRanking
from idnode.core.resolver import Resolved, Resolver

log = logging.getLogger(__name__)


async def warm_hot_cache(resolver: Resolver, scans: ScanRanking, forms: HandleForms | None,
                         top: int, window: float) -> int:
    """Loads the `top` records most scanned in the last `window` seconds into the hot cache,
    once; returns how many it loaded. A failure is logged, not raised: the cache fills
    itself from requests anyway."""
    try:
        ranked = await scans.most_scanned(top, window)

        async def with_forms(entries: list[Resolved]) -> None:
            if forms is not None:
                await forms.warm([(e.record, e.rendered) for e in entries])

        warmed = await resolver.warm(ranked, with_forms)
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("hot cache not warmed: %r", exc)
        return 0
    log.info("hot cache warmed records=%d of most scanned=%d", warmed, len(ranked))
    return warmed
