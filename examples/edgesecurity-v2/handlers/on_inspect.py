"""Runs when content-inspect has classified a body (a sync event: its verdict is the Inspect result's).

Records the categories in the session's state and has anti-virus scan every body: an infected
one is denied.
"""

from edgetrail.sdk import Verdict, anti_virus


def handle(event, ctx):
    ctx.state.set("inspected", event.attributes.get("content.categories", ""))
    scan = anti_virus.scan(event.payload, name=event.attributes.get("content.sha256", ""))
    ctx.state.set("scan", scan.signature if scan.infected else "clean")
    if scan.infected:
        return Verdict.deny(reason=f"malware found: {scan.signature}")
    return Verdict.allow()
