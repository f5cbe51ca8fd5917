"""PEP 691 content negotiation: pick JSON or HTML from the client's ``Accept`` header.

pip sends ``application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;
q=0.1, text/html; q=0.01`` and uv something close; browsers send ``text/html`` or ``*/*``.
The highest q-value wins; on a tie the order below (JSON first) decides. No header means
HTML, the PEP 503 default. Nothing acceptable is a 406.
"""

from __future__ import annotations

from functools import lru_cache

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"

# (offered media type, format, content type sent back), in the server's preference order
OFFERS = (
    (JSON_V1, "json", JSON_V1),
    ("application/vnd.pypi.simple.latest+json", "json", JSON_V1),
    (HTML_V1, "html", HTML_V1),
    ("application/vnd.pypi.simple.latest+html", "html", HTML_V1),
    (TEXT_HTML, "html", "text/html; charset=utf-8"),
)


def _matches(pattern: str, offered: str) -> bool:
    if pattern in ("*/*", offered):
        return True
    if pattern.endswith("/*"):
        return offered.split("/", 1)[0] == pattern[:-2]
    return False


@lru_cache(maxsize=256)
def negotiate(accept: str | None) -> tuple[str, str] | None:
    """Return (format, content type) for an Accept header, or None when nothing fits."""
    if not accept or not accept.strip():
        return "html", "text/html; charset=utf-8"
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q))
    best: tuple[tuple[float, int, int], str, str] | None = None
    for order, (offered, fmt, content_type) in enumerate(OFFERS):
        specific = [(_specificity(pattern, offered), q) for pattern, q in ranges if _matches(pattern, offered)]
        if not specific:
            continue
        specificity, q = max(specific)  # the most specific matching range sets the q
        if q <= 0:
            continue
        # an explicit request keeps the server's order (JSON first); a wildcard-only match
        # prefers plain text/html, which every client understands
        tiebreak = -order if specificity == 2 else int(offered == TEXT_HTML) - 10
        score = (q, specificity, tiebreak)
        if best is None or score > best[0]:
            best = (score, fmt, content_type)
    return (best[1], best[2]) if best else None


def _specificity(pattern: str, offered: str) -> int:
    return 2 if pattern == offered else 1 if pattern != "*/*" else 0
