#!/usr/bin/env bash
# Runs every test: the Swift suites (which start the real services they need in private run
# directories and stop them after), then the Python-side tests. Called by `make test`, which
# has already run setup and the build and exported LD_LIBRARY_PATH for the librdkafka runtime.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "note: not running as root: tests that need root (PostgreSQL as its own user, namespaces, eBPF) say SKIPPED"
fi

echo "==> Swift tests"
swift build --build-tests || { echo "error: building the tests failed"; exit 1; }
swift test --skip-build 2>&1 | tee .build/swift-test.log
swift_status=${PIPESTATUS[0]}

echo "==> Python tests"
.venv/bin/python -m pytest -q tests/python
python_status=$?

if [ "$swift_status" -ne 0 ] || [ "$python_status" -ne 0 ]; then
  echo "FAILED: swift test exit $swift_status, pytest exit $python_status"
  exit 1
fi
