#!/usr/bin/env bash
# Builds the eBPF programs in bpf/ into bpf/.output/*.bpf.o with clang -target bpf (the Swift
# toolchain's clang; Debian's is not needed). vmlinux.h is generated from the running kernel's
# BTF the first time. Objects are rebuilt only when a source changed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bpf/.output
mkdir -p "$out"
clang="${CLANG:-$(command -v clang || echo /opt/swift/usr/bin/clang)}"
if [ ! -s "$out/vmlinux.h" ]; then
  [ -r /sys/kernel/btf/vmlinux ] || { echo "build-bpf: this kernel has no BTF (/sys/kernel/btf/vmlinux); the datapath needs it" >&2; exit 1; }
  bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$out/vmlinux.h.tmp"
  mv "$out/vmlinux.h.tmp" "$out/vmlinux.h"
fi
for source in bpf/*.bpf.c; do
  name=$(basename "$source" .c)
  object="$out/$name.o"
  # Up to date unless the source or any header it may include (bpf/*.h) is newer.
  if [ -f "$object" ] && [ "$object" -nt "$source" ] && [ -z "$(find bpf -maxdepth 1 -name '*.h' -newer "$object")" ]; then
    continue
  fi
  echo "==> clang -target bpf $source"
  "$clang" -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 \
    -I "$out" -I bpf -I /usr/include/x86_64-linux-gnu -c "$source" -o "$object.tmp"
  mv "$object.tmp" "$object"
done
