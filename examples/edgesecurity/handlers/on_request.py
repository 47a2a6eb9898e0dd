"""Runs when http-proxy receives a client request (a sync event: the proxy waits for a verdict).

Asks policy-mgr whether the request may proceed; every SDK call carries the session cookie and
the trace context, so the policy decision shows up in the session's trace.
"""

from edgetrail.sdk import Verdict, policy_mgr


def handle(event, ctx):
    decision = policy_mgr.check(
        method=event.attributes.get("http.method", "GET"),
        url=event.attributes.get("http.url", "/"),
        client=event.attributes.get("client", ""),
    )
    ctx.state.set("last_policy", decision.rule)
    if decision.denied:
        return Verdict.deny(reason=decision.reason)
    return Verdict.allow()
