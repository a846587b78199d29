#!/usr/bin/env bash
# Device-side figures for BENCHMARKS.md, in one run:
#  - for each choice of verifier, SHA-2 variant and opt-level: flash (.vector_table + .text +
#    .rodata + .data) and static RAM (.data + .bss) of the minimal Cortex-M4F firmware (the size
#    reference), then the stack peak and the Ed25519/ES256 verify instruction count of the same
#    choice's QEMU run (mps2-an386), which installs a signed update through the core;
#  - the core's state size and the streaming verify throughput against sha256sum.
#
# `bench/device.sh qemu` (CI): only the shipped choices (Ed25519 and ES256, the example's own
# profile), each run in QEMU; fails if a run fails or its stack peak exceeds STACK_LIMIT bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
STACK_LIMIT=${STACK_LIMIT:-8192}

grep -m1 'model name' /proc/cpuinfo || true
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
if ! command -v qemu-system-arm >/dev/null 2>&1; then
  echo "!!! qemu-system-arm is missing: apt-get install qemu-system-arm" >&2
  exit 1
fi

fw=examples/firmware-thumbv7em
# Where cargo puts the builds (an absolute CARGO_TARGET_DIR is shared by both programs).
target_of() { echo "${CARGO_TARGET_DIR:-$PWD/$1/target}/thumbv7em-none-eabihf/release"; }
elf=$(target_of "$fw")/firmware-thumbv7em
section() {
  local hex
  hex=$(readelf -SW "$elf" | awk -v s="$1" '{ for (i = 1; i < NF; i++) if ($i == s) print $(i + 4) }')
  echo $((16#${hex:-0}))
}
# build FEATURES [OPT-LEVEL]: the example with exactly these features.
build() {
  local opt=${2:-}
  (cd "$fw" && if [ -n "$opt" ]; then export CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt; fi &&
    cargo build -q --locked --release --no-default-features --features "$1")
}
# run_qemu LOG: the QEMU run of the last build; its output in LOG, its status returned.
run_qemu() {
  timeout 300 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf" >"$1" 2>&1
}
field() { sed -n "s/^$1: \([0-9]*\).*/\1/p" "$2"; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ "$mode" = qemu ]; then
  status=0
  for algo in ed25519 es256; do
    build "$algo sha2-compact qemu"
    echo "--- QEMU run, $algo:"
    if ! run_qemu "$log"; then
      cat "$log"
      echo "!!! the QEMU run failed ($algo)" >&2
      status=1
      continue
    fi
    cat "$log"
    peak=$(field 'stack peak bytes' "$log")
    if [ -z "$peak" ] || [ "$peak" -gt "$STACK_LIMIT" ]; then
      echo "!!! stack peak ${peak:-unknown} B exceeds the limit of $STACK_LIMIT B ($algo)" >&2
      status=1
    fi
  done
  exit $status
fi

# label | features | opt-level
choices=(
  "Ed25519: ed25519-compact, opt_size|ed25519 sha2-compact|z"
  "Ed25519: ed25519-compact, defaults|ed25519-compact-speed sha2-compact|z"
  "Ed25519: ed25519-dalek, no \`fast\`|ed25519-dalek sha2-compact|z"
  "Ed25519: ed25519-dalek, no \`fast\`, unrolled SHA-2|ed25519-dalek|z"
  "ES256: p256|es256 sha2-compact|z"
  "ES256: p256, unrolled SHA-2|es256|z"
  "Ed25519: ed25519-compact, opt_size|ed25519 sha2-compact|s"
  "ES256: p256|es256 sha2-compact|s"
)
echo "firmware-thumbv7em (LTO, codegen-units 1, panic abort), bytes; stack and instructions from QEMU:"
printf '  | %-52s | %-3s | %7s | %7s | %7s | %10s | %11s | %12s |\n' \
  choice opt .text .rodata flash "static RAM" "stack peak" "verify insns"
for choice in "${choices[@]}"; do
  IFS='|' read -r label features opt <<<"$choice"
  build "$features" "$opt"
  text=$(section .text); ro=$(section .rodata); vt=$(section .vector_table)
  data=$(section .data); bss=$(section .bss)
  build "$features qemu" "$opt"
  if run_qemu "$log"; then
    peak=$(field 'stack peak bytes' "$log"); insns=$(field 'verify instructions' "$log")
  else
    peak="run failed"; insns="-"
  fi
  printf '  | %-52s | %-3s | %7d | %7d | %7d | %10d | %11s | %12s |\n' "$label" "$opt" \
    "$text" "$ro" $((vt + text + ro + data)) $((data + bss)) "$peak" "$insns"
done
echo
# Each verifier alone: one verification linked into a bare Cortex-M4F program, minus the same
# program without it (the start-up). Includes the SHA-512 an Ed25519 verifier needs.
vs=bench/verifier-size
vs_elf=$(target_of "$vs")/verifier-size
vs_size() {
  (cd "$vs" && cargo build -q --locked --release --features "$1")
  local t; t=$(size -A "$vs_elf" | awk '$1 == ".text" || $1 == ".rodata" || $1 == ".vector_table" || $1 == ".data" { n += $2 } END { print n }')
  echo "$t"
}
base=$(vs_size none)
echo "one verify alone (bench/verifier-size, opt-level z, LTO), flash bytes above the bare start-up ($base B):"
for v in "compact|ed25519-compact 2, opt_size, strict checks" "dalek|ed25519-dalek 2 without fast, verify_strict" \
  "salty|salty 0.3 (Cortex-M4 assembly field arithmetic), its verify" "p256|p256 0.13 ECDSA verify"; do
  IFS='|' read -r feature label <<<"$v"
  printf '  | %-60s | %7d |\n' "$label" $(($(vs_size "$feature") - base))
done
echo
echo "QEMU run of the last choice:"
cat "$log"
echo
cargo run -q --release -p updraft-device --example verify_throughput
