"""A handler's answer to a sync event."""

from __future__ import annotations

from dataclasses import dataclass, field


class Decided:
    """Anything with a `decision` of "allow" or "deny"."""

    decision: str

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    @property
    def denied(self) -> bool:
        return self.decision == "deny"


@dataclass(frozen=True)
class Verdict(Decided):
    """`Verdict.allow()` lets the μsrv go on; `Verdict.deny(reason=…)` stops it (http-proxy answers
    the client with a 403 page naming the reason). A handler that returns nothing allows.
    Annotations are extra `key=value` facts the μsrv records with the verdict."""

    decision: str
    reason: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def allow(cls, reason: str = "", **annotations: str) -> Verdict:
        return cls("allow", str(reason), {key: str(value) for key, value in annotations.items()})

    @classmethod
    def deny(cls, reason: str = "", **annotations: str) -> Verdict:
        return cls("deny", str(reason), {key: str(value) for key, value in annotations.items()})
