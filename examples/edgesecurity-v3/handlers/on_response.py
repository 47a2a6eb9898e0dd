"""Runs when http-proxy holds the origin's response (a sync event: the client waits for the verdict).

Has content-inspect classify the body, then asks policy-mgr whether it may go to the client,
handing it the categories and the body: policy-mgr's policy_check handler decides what needs a
scan. A denied response is answered with the 403 page naming the reason.
"""

from edgetrail.sdk import Verdict, content_inspect, policy_mgr


def handle(event, ctx):
    result = content_inspect.inspect(
        content_type=event.attributes.get("http.content_type", "application/octet-stream"),
        body=event.payload,
    )
    ctx.span.set_tag("content.categories", ",".join(result.categories))
    decision = policy_mgr.check(
        method="GET",
        url=event.attributes.get("http.url", "/"),
        categories=result.categories,
        body=event.payload,
    )
    if decision.denied:
        return Verdict.deny(reason=decision.reason)
    return Verdict.allow()
