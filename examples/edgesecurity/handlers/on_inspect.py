"""Runs when content-inspect has classified a body: records the verdict in the session's state."""


def handle(event, ctx):
    ctx.state.set("inspected", event.attributes.get("content.categories", ""))
