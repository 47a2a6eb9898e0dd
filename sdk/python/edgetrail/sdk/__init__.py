"""The handler SDK: what an operator's handler file imports.

A handler file defines ``handle(event, ctx)``; the sidecar (``python -m edgetrail.sidecar``)
runs it for each event its μsrv raises. It returns ``Verdict.allow()``, ``Verdict.deny(reason=…)``
or nothing (= allow). The proxies below call the CNF's other μsrvs on the session's behalf; each
call is a span below the handler's, so the session's trace shows what the handler did::

    from edgetrail.sdk import Verdict, policy_mgr

    def handle(event, ctx):
        decision = policy_mgr.check(method=event.attributes["http.method"], url=event.attributes["http.url"])
        ctx.state.set("last_policy", decision.rule)
        return Verdict.deny(reason=decision.reason) if decision.denied else Verdict.allow()

docs/handlers.md has the whole contract.
"""

from edgetrail.sdk.context import Context, Event, HandlerSpan
from edgetrail.sdk.runtime import SDKError, configure
from edgetrail.sdk.services import (
    InspectResult,
    PolicyDecision,
    ScanResult,
    ServiceError,
    Session,
    anti_virus,
    content_inspect,
    http_proxy,
    policy_mgr,
)
from edgetrail.sdk.verdict import Verdict

__all__ = [
    "Context", "Event", "HandlerSpan", "InspectResult", "PolicyDecision", "ScanResult", "SDKError", "ServiceError",
    "Session", "Verdict", "anti_virus", "configure", "content_inspect", "http_proxy", "policy_mgr",
]
