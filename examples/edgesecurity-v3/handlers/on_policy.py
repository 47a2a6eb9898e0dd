"""Runs when policy-mgr's rules allowed a check (a sync event: a deny here denies the check).

The scan as a condition of the policy: a body content-inspect classified as a download is
scanned by anti-virus, and an infected one denied. Pages, and checks without a body (the
request-time check), pass without a scan.
"""

from edgetrail.sdk import Verdict, anti_virus


def handle(event, ctx):
    categories = event.attributes.get("content.categories", "").split(",")
    if "download" not in categories or not event.payload:
        return Verdict.allow()
    scan = anti_virus.scan(event.payload)
    ctx.state.set("scan", scan.signature if scan.infected else "clean")
    if scan.infected:
        return Verdict.deny(reason=f"malware found: {scan.signature}")
    return Verdict.allow()
