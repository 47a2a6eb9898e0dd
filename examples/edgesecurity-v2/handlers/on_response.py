"""Runs when http-proxy holds the origin's response (a sync event: the client waits for the verdict).

Has content-inspect classify the body. content-inspect's own inspect_done handler decides on it
(it has anti-virus scan it), and that verdict comes back in the result: a denied body is answered
with the 403 page naming the reason.
"""

from edgetrail.sdk import Verdict, content_inspect


def handle(event, ctx):
    result = content_inspect.inspect(
        content_type=event.attributes.get("http.content_type", "application/octet-stream"),
        body=event.payload,
    )
    ctx.span.set_tag("content.categories", ",".join(result.categories))
    if result.decision == "deny":
        return Verdict.deny(reason=result.reason)
    return Verdict.allow()
