"""python -m edgetrail.sidecar: runs one μsrv's handlers next to it."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys

from edgetrail.sdk import runtime as sdk_runtime
from edgetrail.sidecar.handlers import HandlerFile, load
from edgetrail.sidecar.runner import Sidecar

DESCRIPTION = """\
Runs the Python handlers of one μsrv (one sidecar per pod). It attaches to the μsrv's event
stream (DIR/NAME.events.sock), subscribes to the events it has handlers for, and runs each event's
handle(event, ctx) on a worker thread, in a span below the μsrv's event span. A sync event gets the
handler's verdict; when the handler raises, hangs past the event's timeout, returns something that
is not a Verdict, or its file does not import, the event gets its default verdict and the span is
an ERROR naming the file and line. Handler files are watched: an edited file is loaded between
events (a version that does not import is refused and the old one stays); SIGHUP checks at once.
When the μsrv restarts the sidecar attaches again by itself."""

EPILOG = """\
example:
  python -m edgetrail.sidecar --microservice http-proxy --run-dir .run/pods/edgesecurity \\
      --cnf edgesecurity --peer http-proxy=http-proxy --peer policy-mgr=policy-mgr \\
      --handler request_received=examples/edgesecurity/handlers/on_request.py

It prints a line when it attaches ("attached NAME events=…"), detaches, and reloads a handler.
Exit status: 0 after SIGTERM/SIGINT, 2 when the μsrv refuses the subscription (an event it does
not publish) or the arguments are wrong."""


def pair(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'")
    return key.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    # A parent may have started us with these blocked (a process spawned from a thread that
    # blocks them inherits its mask): then SIGTERM would never stop the sidecar.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1})
    # A handler thread woken while another thread (the span sender, the event stream, another
    # handler) holds the GIL waits until that one gives it up: by default after up to 5 ms, which is
    # more than a handler's whole latency budget.
    sys.setswitchinterval(0.0005)
    parser = argparse.ArgumentParser(prog="python -m edgetrail.sidecar", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--microservice", metavar="NAME", help="the μsrv whose events to handle")
    parser.add_argument("--run-dir", metavar="DIR",
                        help="the pod's run directory, where the CNF's μsrvs serve NAME.api.sock and NAME.events.sock")
    parser.add_argument("--handler", action="append", default=[], metavar="EVENT=FILE",
                        type=lambda text: pair(text, "EVENT=FILE"), help="a handler file for an event (repeatable)")
    parser.add_argument("--cnf", default="", metavar="NAME", help="the CNF's name (on every span)")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=KIND",
                        type=lambda text: pair(text, "NAME=KIND"),
                        help="one of the CNF's μsrvs the SDK may call (repeatable); "
                             "without any, each μsrv is taken to be named after its kind")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        type=lambda text: pair(text, "KEY=VALUE"), help="a CNF setting handlers read as ctx.settings")
    parser.add_argument("--redis", default=sdk_runtime.DEFAULT_REDIS, metavar="HOST:PORT|PATH",
                        help=f"Redis for ctx.state (default {sdk_runtime.DEFAULT_REDIS})")
    parser.add_argument("--otlp", default=sdk_runtime.DEFAULT_OTLP, metavar="HOST:PORT|PATH|none",
                        help=f"the node collector's OTLP/gRPC receiver for spans (default {sdk_runtime.DEFAULT_OTLP})")
    parser.add_argument("--workers", type=int, default=32, metavar="N",
                        help="handlers running at once (default 32); a hung one is replaced, not counted")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--check", action="store_true",
                        help="only load each handler file as the sidecar would (compile, import, find handle), "
                             "print a line per file (FILE: ok, or where it fails and why) and exit: "
                             "0 when every file loads, 1 otherwise; no μsrv needed")
    args = parser.parse_args(argv)
    if not args.handler:
        parser.error("give at least one --handler EVENT=FILE")
    if args.check:
        return check(args.handler)
    for flag, value in (("--microservice", args.microservice), ("--run-dir", args.run_dir)):
        if not value:
            parser.error(f"{flag} is required (except with --check)")

    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    events = [event for event, _ in args.handler]
    duplicates = sorted({event for event in events if events.count(event) > 1})
    if duplicates:
        parser.error(f"one handler per event; more than one for: {', '.join(duplicates)}")
    for name, kind in args.peer:
        if kind not in sdk_runtime.KINDS:
            parser.error(f"--peer {name}={kind}: unknown kind; the kinds are {', '.join(sdk_runtime.KINDS)}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not os.path.isdir(args.run_dir):
        os.makedirs(args.run_dir, exist_ok=True)

    peers = dict(args.peer) or {kind: kind for kind in sdk_runtime.KINDS}
    runtime = sdk_runtime.configure(
        args.microservice, os.path.abspath(args.run_dir), cnf=args.cnf, peers=peers, settings=dict(args.setting),
        redis=args.redis, otlp=None if args.otlp == "none" else args.otlp)
    handlers = {event: HandlerFile(event, path) for event, path in args.handler}
    sidecar = Sidecar(runtime, handlers, workers=args.workers)
    for handler in handlers.values():
        _, problem, _ = handler.current()
        if problem:
            sidecar.say(f"handler {handler.name} ({handler.event}) cannot run: {problem}; "
                        "its events get their default verdict until the file is fixed")
    signal.signal(signal.SIGTERM, lambda *_: sidecar.stop())
    signal.signal(signal.SIGINT, lambda *_: sidecar.stop())
    signal.signal(signal.SIGHUP, lambda *_: sidecar.check_files())
    # `kill -USR1 PID` prints every thread's stack to stderr: where a stuck sidecar is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return sidecar.run()


def check(handlers: list[tuple[str, str]]) -> int:
    """Loads each handler file the way a sidecar would, without attaching: what the node agent
    runs before it deploys handler code, so a file that does not import never replaces one that
    does."""
    failed = False
    for event, path in handlers:
        _, problem = load(path)
        if problem:
            failed = True
            print(f"{problem} (handler for {event})", flush=True)
            if problem.details:
                print(problem.details.rstrip(), file=sys.stderr, flush=True)
        else:
            print(f"{path}: ok", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
