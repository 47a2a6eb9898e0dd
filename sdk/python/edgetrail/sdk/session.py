"""What travels with every call of one session, in gRPC metadata — read and written exactly as the
Swift side does (EdgetrailCore's SessionContext): the cookie in `edgetrail-cookie` (16 hex digits)
and again in W3C `baggage` as `edgetrail.cookie`, and the W3C `traceparent` naming the caller's
span, so the called μsrv's span becomes its child."""

from __future__ import annotations

import re
from dataclasses import dataclass

COOKIE_HEADER = "edgetrail-cookie"
TRACEPARENT_HEADER = "traceparent"
BAGGAGE_HEADER = "baggage"
COOKIE_KEY = "edgetrail.cookie"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def cookie_hex(cookie: int) -> str:
    """A cookie as users see it everywhere (`edgetrail trace`, Redis keys): 16 hex digits."""
    return f"{cookie:016x}"


@dataclass(frozen=True)
class TraceParent:
    trace_id: int
    span_id: int
    sampled: bool = True

    @classmethod
    def parse(cls, header: str) -> TraceParent | None:
        """The W3C header, or None when it is missing or not what it claims to be."""
        match = _TRACEPARENT.match(header.strip()) if header else None
        if not match:
            return None
        version, trace_id, span_id, flags, rest = match.groups()
        if version == "ff" or (version == "00" and rest):
            return None
        trace, span = int(trace_id, 16), int(span_id, 16)
        if trace == 0 or span == 0:
            return None
        return cls(trace, span, int(flags, 16) & 1 == 1)

    @property
    def header(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


def metadata(cookie: int, parent: TraceParent | None) -> list[tuple[str, str]]:
    """The metadata of a call made for the session `cookie` from the span `parent`."""
    result = [(COOKIE_HEADER, cookie_hex(cookie)), (BAGGAGE_HEADER, f"{COOKIE_KEY}={cookie_hex(cookie)}")]
    if parent is not None:
        result.append((TRACEPARENT_HEADER, parent.header))
    return result
