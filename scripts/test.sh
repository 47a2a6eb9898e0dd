#!/usr/bin/env bash
# Runs every test: the Swift suites (which start the real services they need in private run
# directories and stop them after), then the Python-side tests (which start the collector and
# central as processes against real services). Called by `make test`, which has already run
# setup and the build and exported LD_LIBRARY_PATH for the librdkafka runtime.
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
.venv/bin/python -m pytest -q -p no:cacheprovider pytests 2>&1 | tee .build/python-test.log
python_status=${PIPESTATUS[0]}

# One closing line over both runners.
swift_total=$(grep -oE 'Test run with [0-9]+ tests?' .build/swift-test.log | grep -oE '[0-9]+' | tail -1)
swift_failed=$(grep -E '^✘ Test .* failed after' .build/swift-test.log | grep -cv '^✘ Test run with')
swift_passed=$(( ${swift_total:-0} - ${swift_failed:-0} ))
py_passed=$(grep -oE '[0-9]+ passed' .build/python-test.log | tail -1 | grep -oE '[0-9]+')
py_failed=$(grep -oE '[0-9]+ failed' .build/python-test.log | tail -1 | grep -oE '[0-9]+')
py_skipped=$(grep -oE '[0-9]+ skipped' .build/python-test.log | tail -1 | grep -oE '[0-9]+')
passed=$(( ${swift_passed:-0} + ${py_passed:-0} ))
failed=$(( ${swift_failed:-0} + ${py_failed:-0} ))
if [ "$swift_status" -ne 0 ] || [ "$python_status" -ne 0 ]; then
  echo "FAILED: swift test exit $swift_status, pytest exit $python_status"
  [ "$failed" -eq 0 ] && failed=1
  echo "tests: $passed passed, $failed failed, ${py_skipped:-0} skipped"
  exit 1
fi
echo "tests: $passed passed, 0 failed, ${py_skipped:-0} skipped"
