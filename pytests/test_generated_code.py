"""The committed generated code must match proto/: editing a .proto without `make proto` fails here."""

import hashlib
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTOS = sorted((ROOT / "proto").rglob("*.proto"))
RECORDS = [
    ROOT / "Sources" / "EdgetrailProto" / "Generated" / "SOURCES.sha256",
    ROOT / "sdk" / "python" / "edgetrail" / "v1" / "SOURCES.sha256",
]


def recorded(path):
    entries = {}
    for line in path.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        entries[name.lstrip("*")] = digest
    return entries


def current():
    return {
        str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in PROTOS
    }


def test_every_proto_file_is_recorded_with_its_current_checksum():
    assert PROTOS, "no .proto files found under proto/"
    now = current()
    for record in RECORDS:
        was = recorded(record)
        stale = sorted(name for name in now if was.get(name) != now[name])
        gone = sorted(name for name in was if name not in now)
        assert not stale and not gone, (
            f"{record.relative_to(ROOT)} is out of date: changed or new {stale}, removed {gone}; "
            "run `make proto` and commit the result"
        )


def test_each_proto_has_generated_swift_and_python():
    swift = ROOT / "Sources" / "EdgetrailProto" / "Generated"
    python = ROOT / "sdk" / "python" / "edgetrail" / "v1"
    for proto in PROTOS:
        stem = proto.stem
        assert (swift / f"{stem}.pb.swift").is_file(), f"missing {stem}.pb.swift"
        assert (python / f"{stem}_pb2.py").is_file(), f"missing {stem}_pb2.py"
        assert (python / f"{stem}_pb2_grpc.py").is_file(), f"missing {stem}_pb2_grpc.py"
