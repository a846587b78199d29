#!/usr/bin/env bash
# Device-side figures for BENCHMARKS.md, in one run:
#  - flash (.vector_table + .text + .rodata) and static RAM (.data + .bss) of the minimal
#    Cortex-M4F firmware with the core, once trusting Ed25519 and once ES256;
#  - the core's state size and the streaming verify throughput against sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true

elf=examples/firmware-thumbv7em/target/thumbv7em-none-eabihf/release/firmware-thumbv7em
section() { local hex; hex=$(readelf -SW "$elf" | awk -v s="$1" '{ for (i = 1; i < NF; i++) if ($i == s) print $(i + 4) }'); echo $((16#${hex:-0})); }

echo "firmware-thumbv7em (opt-level s, LTO), bytes:"
printf '  %-8s %8s %8s %8s %12s\n' algo .text .rodata flash "static RAM"
for algo in ed25519 es256; do
  (cd examples/firmware-thumbv7em &&
    cargo build -q --release --no-default-features --features "$algo")
  text=$(section .text); ro=$(section .rodata); vt=$(section .vector_table)
  data=$(section .data); bss=$(section .bss)
  printf '  %-8s %8d %8d %8d %12d\n' "$algo" "$text" "$ro" $((vt + text + ro + data)) $((data + bss))
done
echo
cargo run -q --release -p updraft-device --example verify_throughput
