"""Sends one session's spans with the OpenTelemetry Python SDK over OTLP/gRPC.

    python send_spans.py ENDPOINT COOKIE [--error]

A root span (http-proxy: request) with two children (policy-mgr: policy_check, and
content-inspect: inspect); the cookie rides as the span attribute edgetrail.cookie on the root
and as W3C baggage propagated to the children (copied to their attributes the way a baggage
span processor does).
"""

import argparse
import time

from opentelemetry import baggage, context, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


class BaggageToAttributes(SpanProcessor):
    """Copies edgetrail.cookie from the current baggage onto each span as it starts."""

    def on_start(self, span, parent_context=None):
        value = baggage.get_baggage("edgetrail.cookie", parent_context)
        if value is not None:
            span.set_attribute("edgetrail.cookie", value)


def send(endpoint, cookie, error=False, service="http-proxy", root_only=False):
    """With root_only, the cookie is an attribute of the root span alone (as auto-instrumentation
    sets it): the children, exported as they end, reach the collector before their root."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if not root_only:
        provider.add_span_processor(BaggageToAttributes())
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer("edgetrail-test")
    token = context.attach(baggage.set_baggage("edgetrail.cookie", cookie) if not root_only else context.get_current())
    try:
        with tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER) as root:
            root.set_attribute("http.url", "/index.html?user=alice")
            if root_only:
                root.set_attribute("edgetrail.cookie", cookie)
            with tracer.start_as_current_span("policy_check") as check:
                check.set_attribute("policy.rule", "allow-web")
                time.sleep(0.002)
            with tracer.start_as_current_span("inspect") as inspect:
                inspect.add_event("scanned", {"bytes": 512})
                if error:
                    inspect.set_status(trace.Status(trace.StatusCode.ERROR, "infected"))
    finally:
        context.detach(token)
    provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("endpoint")
    parser.add_argument("cookie")
    parser.add_argument("--error", action="store_true")
    args = parser.parse_args()
    send(args.endpoint, args.cookie, args.error)
