"""The handler sidecar: runs one μsrv's Python handlers next to it (one per pod).

    python -m edgetrail.sidecar --microservice NAME --run-dir DIR --handler EVENT=FILE …

See `python -m edgetrail.sidecar --help` and docs/handlers.md."""
