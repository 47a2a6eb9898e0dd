#!/usr/bin/env bash
# Fuzzes the rule language's parser and checker with libFuzzer (coverage-guided, with
# AddressSanitizer), starting from the shipped rule files, and prints how many inputs ran.
#   scripts/fuzz-filters.sh [SECONDS]      (default 60)
# A finding is written to .run/fuzz-filters/crash-* and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
work="$PWD/.run/fuzz-filters"
build="$work/build"
mkdir -p "$build" "$work/corpus"
cp filters/*.rules filters/examples/*.rules fuzz/filters/corpus/* "$work/corpus/" 2>/dev/null || true
flags=(-sanitize=fuzzer,address -O -parse-as-library)
# gold warns about every sanitizer helper symbol it cannot export; those warnings mean nothing here.
quiet() { "$@" 2> >(grep -v "Cannot export local symbol" >&2); }
echo "==> building the fuzzer (EdgetrailCore + the rule language's parser and checker)"
quiet swiftc "${flags[@]}" -module-name EdgetrailCore -emit-module -emit-module-path "$build/EdgetrailCore.swiftmodule" \
    -emit-library -static Sources/EdgetrailCore/*.swift -o "$build/libEdgetrailCore.a"
quiet swiftc "${flags[@]}" -module-name EdgetrailFuzzFilters -I "$build" -L "$build" -lEdgetrailCore \
    Sources/EdgetrailFilters/{Lexer,Parser,RuleChecker,RuleFile,Syntax,BoundedRegex}.swift fuzz/filters/FuzzLint.swift \
    -o "$build/fuzz-filters"
echo "==> fuzzing for $seconds s"
cd "$work"
set +e
# Leak detection is off: Foundation's NSRegularExpression leaks ~500 bytes on every pattern it
# refuses (inside _CFRegularExpressionCreate), which lint does by design for bad regexes.
"$build/fuzz-filters" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 -detect_leaks=0 corpus > fuzz.log 2>&1
status=$?
set -e
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' fuzz.log | grep -o '[0-9]*$' || echo 0)
if [ "$status" -ne 0 ]; then
    grep -E 'ERROR|crashed|Fatal error|^ *[0-9]+ .* in fuzz-filters' fuzz.log | head -20 || true
    echo "fuzz-filters: FINDING after $runs inputs; the input is in $work (crash-*/leak-*/timeout-*), the log in $work/fuzz.log"
    exit 1
fi
echo "fuzz-filters: $runs inputs in $seconds s without a crash (corpus: $(ls corpus | wc -l) files)"
