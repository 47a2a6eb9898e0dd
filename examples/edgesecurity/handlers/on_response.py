"""Runs after http-proxy sent the response: hands the body to content-inspect."""

from edgetrail.sdk import content_inspect


def handle(event, ctx):
    result = content_inspect.inspect(
        content_type=event.attributes.get("http.content_type", "application/octet-stream"),
        body=event.payload,
    )
    ctx.span.set_tag("content.categories", ",".join(result.categories))
