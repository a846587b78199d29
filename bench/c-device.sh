#!/usr/bin/env bash
# Size of the C API path on a Cortex-M4F, next to the Rust one, in one run:
#  - the C example firmware (examples/c-device/mcu_main.c, arm-none-eabi-gcc -Os, --gc-sections)
#    linked with the updraft-device-ffi static library built for thumbv7em-none-eabihf with the
#    Rust firmware's profile (opt-level "s", fat LTO, one codegen unit, panic abort);
#  - the Rust firmware example (examples/firmware-thumbv7em), as bench/device.sh sizes it;
#  once trusting Ed25519 and once ES256. Needs gcc-arm-none-eabi (and libnewlib-arm-none-eabi).
# `--build-only` builds and links the C firmware for both algorithms without the Rust sizes (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
command -v arm-none-eabi-gcc >/dev/null || { echo "arm-none-eabi-gcc missing: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi" >&2; exit 1; }

target_dir=${CARGO_TARGET_DIR:-target}
out=$target_dir/c-device
mkdir -p "$out"
# The library's flash geometry must be the C flash driver's (mcu_main.c): 4-byte words, 16 KiB sectors.
export UPDRAFT_FFI_WRITE_SIZE=4 UPDRAFT_FFI_ERASE_SIZE=16384
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=fat \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort
cflags=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -std=c11 -Wall -Wextra -Werror
  -ffunction-sections -fdata-sections -Icrates/updraft-device-ffi/include -Iexamples/c-device)
ldflags=(-nostartfiles -T examples/c-device/mcu.ld -Wl,--gc-sections -Wl,--no-warn-execstack --specs=nano.specs --specs=nosys.specs)

section() { local hex; hex=$(readelf -SW "$1" | awk -v s="$2" '{ for (i = 1; i < NF; i++) if ($i == s) print $(i + 4) }'); echo $((16#${hex:-0})); }
row() { # name elf vector-section
  local text ro vt data bss
  text=$(section "$2" .text); ro=$(section "$2" .rodata); vt=$(section "$2" "$3")
  data=$(section "$2" .data); bss=$(section "$2" .bss)
  printf '  %-26s %8d %8d %8d %12d\n' "$1" "$text" "$ro" $((vt + text + ro + data)) $((data + bss))
}

for algo in ed25519 es256; do
  # `cargo rustc --crate-type staticlib`: with the rlib type beside it, rustc would not run LTO.
  cargo rustc -q --locked -p updraft-device-ffi --release --target thumbv7em-none-eabihf --crate-type staticlib \
    --no-default-features --features "$algo,panic-handler"
  define=""; [ "$algo" = es256 ] && define=-DUPDRAFT_EXAMPLE_ES256
  arm-none-eabi-gcc "${cflags[@]}" $define "${ldflags[@]}" \
    examples/c-device/mcu_startup.c examples/c-device/mcu_main.c examples/c-device/example.c \
    "$target_dir"/thumbv7em-none-eabihf/release/libupdraft_device_ffi.a -o "$out/c-device-$algo.elf"
done
[ "${1:-}" = --build-only ] && { echo "built $out/c-device-{ed25519,es256}.elf"; exit 0; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "$(arm-none-eabi-gcc --version | head -1); $(rustc --version)"
echo "Cortex-M4F firmware, bytes (flash = vector table + .text + .rodata + .data):"
printf '  %-26s %8s %8s %8s %12s\n' program .text .rodata flash "static RAM"
for algo in ed25519 es256; do
  row "C API ($algo)" "$out/c-device-$algo.elf" .isr_vector
  (cd examples/firmware-thumbv7em && cargo build -q --release --no-default-features --features "$algo")
  fw_target=${CARGO_TARGET_DIR:-examples/firmware-thumbv7em/target}
  row "Rust firmware ($algo)" "$fw_target"/thumbv7em-none-eabihf/release/firmware-thumbv7em .vector_table
done
echo "arm-none-eabi-size:"
arm-none-eabi-size "$out"/c-device-*.elf
