#!/usr/bin/env bash
# Regenerates the committed code for proto/edgetrail/v1/*.proto:
#   Swift (messages + gRPC) -> Sources/EdgetrailProto/Generated/
#   Python (messages + gRPC) -> sdk/python/edgetrail/v1/
# and records the sources' checksums beside each, so a test notices a .proto edited without
# regeneration. Builds the protoc plugins from the package's own dependencies (release, ~2 min
# the first time). Run through `make proto`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v protoc >/dev/null || fail "protoc is missing; run 'make setup' (Debian package protobuf-compiler)"
[ -x .venv/bin/python ] || fail "the Python venv is missing; run 'make setup'"

say "building protoc plugins (protoc-gen-swift, protoc-gen-grpc-swift-2)"
swift build -c release --product protoc-gen-swift
swift build -c release --product protoc-gen-grpc-swift-2
bin="$(swift build -c release --show-bin-path)"

protos=(proto/edgetrail/v1/*.proto)
swift_out=Sources/EdgetrailProto/Generated
python_out=sdk/python

say "generating Swift into $swift_out"
rm -f "$swift_out"/*.swift
protoc -I proto \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
  --swift_out="$swift_out" --swift_opt=Visibility=Public,FileNaming=DropPath \
  --grpc-swift-2_out="$swift_out" \
  --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,FileNaming=DropPath \
  "${protos[@]}"

say "generating Python into $python_out/edgetrail/v1"
rm -f "$python_out"/edgetrail/v1/*_pb2*.py "$python_out"/edgetrail/v1/*_pb2*.pyi
.venv/bin/python -m grpc_tools.protoc -I proto \
  --python_out="$python_out" --pyi_out="$python_out" --grpc_python_out="$python_out" \
  "${protos[@]}"
touch "$python_out/edgetrail/v1/__init__.py"

say "recording source checksums"
sha256sum "${protos[@]}" > "$swift_out/SOURCES.sha256"
cp "$swift_out/SOURCES.sha256" "$python_out/edgetrail/v1/SOURCES.sha256"
say "done: $(ls "$swift_out"/*.swift | wc -l) Swift files, $(ls "$python_out"/edgetrail/v1/*.py | wc -l) Python files"
