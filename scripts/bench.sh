#!/usr/bin/env bash
# Runs the benchmarks on a release build against a broker of their own, then stops it.
# Figures, not pass/fail: compare them with the targets the command prints.
set -euo pipefail
cd "$(dirname "$0")/.."
edgetrail="$(swift build -c release --show-bin-path)/edgetrail"
run_dir="$PWD/.run/bench"
port=19192
redis_port=16479
"$edgetrail" infra up --only broker redis --run-dir "$run_dir" --broker-port "$port" --redis-port "$redis_port"
trap '"$edgetrail" infra down --run-dir "$run_dir" --broker-port "$port" --redis-port "$redis_port" >/dev/null' EXIT
echo "==> edgetrail bench collector"
"$edgetrail" bench collector --brokers "127.0.0.1:$port" --cookies "${BENCH_COOKIES:-100000}" --work-dir "$run_dir/collector"
echo "==> edgetrail bench collector --otlp"
"$edgetrail" bench collector --otlp --brokers "127.0.0.1:$port" --redis "127.0.0.1:$redis_port" --cookies "${BENCH_OTLP_COOKIES:-50000}" --work-dir "$run_dir/collector"
echo "==> edgetrail bench central"
"$edgetrail" bench central --cookies "${BENCH_STORE_COOKIES:-1000000}" --store "$PWD/.run/bench-central.sqlite"
echo "==> edgetrail bench filters"
"$edgetrail" bench filters
echo "==> edgetrail bench datapath"
if [ "$(id -u)" -eq 0 ]; then
  "$edgetrail" bench datapath --object "$PWD/bpf/.output/datapath.bpf.o"
else
  echo "SKIPPED: the datapath benchmark makes network namespaces and loads eBPF programs (needs root)"
fi
echo "==> edgetrail bench proxy --mode microservice"
"$edgetrail" bench proxy --mode microservice --redis "127.0.0.1:$redis_port"
echo "==> edgetrail bench handler"
"$edgetrail" bench handler --redis "127.0.0.1:$redis_port"
echo "==> edgetrail bench proxy"
if [ "$(id -u)" -eq 0 ]; then
  "$edgetrail" bench proxy --object "$PWD/bpf/.output/datapath.bpf.o"
else
  echo "SKIPPED: the proxy benchmark makes network namespaces, loads eBPF programs and sets iptables rules (needs root)"
fi
echo "==> edgetrail bench portal"
"$edgetrail" bench portal
echo "==> scripts/bench-portal-browser.py (the live trace log in headless Chromium)"
.venv/bin/python scripts/bench-portal-browser.py --edgetrail "$edgetrail"
echo "==> edgetrail bench chain"
if [ "$(id -u)" -eq 0 ]; then
  "$edgetrail" bench chain --sessions "${BENCH_CHAIN_SESSIONS:-10000}" --run-dir "$run_dir" --broker-port "$port" --redis-port "$redis_port"
else
  echo "SKIPPED: the chain benchmark builds an edge node (network namespaces, eBPF; needs root)"
fi
