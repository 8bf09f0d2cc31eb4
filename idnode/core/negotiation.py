"""HTTP content negotiation's weighted lists (RFC 9110 §12.4.2: Accept, Accept-Language),
parsed in one place for every rule that ranks them."""
from __future__ import annotations


def weighted(header: str) -> list[tuple[str, float]]:
    """Each member of an Accept-style header with its weight, in header order: the name
    stripped and lowercased, q=1 when absent, a q that is not a number read as 0."""
    out = []
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out.append((name.strip().lower(), q))
    return out
