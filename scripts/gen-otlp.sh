#!/usr/bin/env bash
# Regenerates the Swift code for the OTLP trace service (what the collector's span receiver
# speaks) under Sources/EdgetrailOTLP/Generated/. No OTLP .proto sources are on the registries
# this project reaches; the pinned opentelemetry-proto wheel (sdk/python/requirements.lock)
# carries the compiled descriptors, which protoc accepts as --descriptor_set_in.
# Run through `make proto` (after scripts/gen-proto.sh has built the plugins).
set -euo pipefail
cd "$(dirname "$0")/.."

out=Sources/EdgetrailOTLP/Generated
bin="$(swift build -c release --show-bin-path)"
[ -x "$bin/protoc-gen-swift" ] && [ -x "$bin/protoc-gen-grpc-swift-2" ] \
  || { echo "error: build the plugins first (scripts/gen-proto.sh)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

.venv/bin/python - "$work/otlp.pb" <<'PY'
import sys
from google.protobuf import descriptor_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

files, seen = [], set()
def add(file_descriptor):
    if file_descriptor.name in seen:
        return
    for dependency in file_descriptor.dependencies:
        add(dependency)
    seen.add(file_descriptor.name)
    proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(proto)
    files.append(proto)
add(trace_service_pb2.DESCRIPTOR)
with open(sys.argv[1], "wb") as out:
    out.write(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
print("\n".join(f.name for f in files))
PY

rm -f "$out"/*.swift
mkdir -p "$out"
protoc --descriptor_set_in="$work/otlp.pb" \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
  --swift_out="$out" --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  --grpc-swift-2_out="$out" \
  --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,FileNaming=PathToUnderscores \
  opentelemetry/proto/common/v1/common.proto \
  opentelemetry/proto/resource/v1/resource.proto \
  opentelemetry/proto/trace/v1/trace.proto \
  opentelemetry/proto/collector/trace/v1/trace_service.proto
grep -E '^opentelemetry-proto==' sdk/python/requirements.lock | cut -d' ' -f1 > "$out/SOURCE"
# Files for protos without services are empty shells; keep only what has content.
for file in "$out"/*.grpc.swift; do grep -q "enum\|struct\|protocol" "$file" || rm -f "$file"; done
echo "==> OTLP: $(ls "$out"/*.swift | wc -l) Swift files from $(cat "$out/SOURCE")"
