/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The C counterpart of examples/firmware-thumbv7em: a minimal Cortex-M4F firmware that links
 * the Updraft core through its C API, so that the C path can be sized next to the Rust one
 * (bench/c-device.sh). Same flash driver (memory-mapped, word-programmed), same layout (two
 * 384 KiB slots in 16 KiB sectors after the 128 KiB program), same board stand-ins.
 * The library must be built with UPDRAFT_FFI_WRITE_SIZE=4 UPDRAFT_FFI_ERASE_SIZE=16384.
 */
#include <stddef.h>
#include <stdint.h>

#include "example.h"

#define FLASH_BASE 0x08020000u
#define SLOT_SIZE (384u * 1024u)
#define SECTOR (16u * 1024u)
#define FLASH_SIZE (896u * 1024u)
#define STAND_IN_REGISTER ((volatile uint8_t *)0x40011004u)

#if defined(UPDRAFT_EXAMPLE_ES256)
#define KEY_ALGORITHM UPDRAFT_ALG_ES256
/* An uncompressed SEC1 P-256 point (the generator, a valid public key). */
static const uint8_t TRUSTED_KEY[65] = {
    0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4,
    0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8,
    0x98, 0xc2, 0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a,
    0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40,
    0x68, 0x37, 0xbf, 0x51, 0xf5};
#else
#define KEY_ALGORITHM UPDRAFT_ALG_ED25519
static const uint8_t TRUSTED_KEY[32] = {
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};
#endif

/* ---- memory-mapped internal flash, programmed word by word ---------------------------------- */

static int in_area(uint32_t offset, size_t len) {
    return offset <= FLASH_SIZE && len <= FLASH_SIZE - offset;
}

static int32_t mcu_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len) {
    (void)ctx;
    if (!in_area(offset, len)) {
        return -1;
    }
    const volatile uint8_t *src = (const volatile uint8_t *)(FLASH_BASE + offset);
    for (size_t i = 0; i < len; i++) {
        buf[i] = src[i];
    }
    return 0;
}

static int32_t mcu_write(void *ctx, uint32_t offset, const uint8_t *data, size_t len) {
    (void)ctx;
    if (!in_area(offset, len) || offset % 4 || len % 4) {
        return -1;
    }
    volatile uint32_t *dst = (volatile uint32_t *)(FLASH_BASE + offset);
    for (size_t i = 0; i < len / 4; i++) {
        const uint8_t *w = data + 4 * i;
        dst[i] = (uint32_t)w[0] | (uint32_t)w[1] << 8 | (uint32_t)w[2] << 16 | (uint32_t)w[3] << 24;
    }
    return 0;
}

static int32_t mcu_erase(void *ctx, uint32_t from, uint32_t to) {
    (void)ctx;
    if (to < from || !in_area(from, to - from) || from % SECTOR || to % SECTOR) {
        return -1;
    }
    /* A real driver starts a sector erase here. */
    volatile uint32_t *dst = (volatile uint32_t *)(FLASH_BASE + from);
    for (uint32_t i = 0; i < (to - from) / 4; i++) {
        dst[i] = 0xFFFFFFFFu;
    }
    return 0;
}

/* ---- board stand-ins: a product wires its transport, clock and reset here ------------------ */

static size_t receive(uint8_t *buf, size_t cap) {
    (void)buf; /* as the Rust firmware: only the length comes from the stand-in register */
    size_t n = *STAND_IN_REGISTER;
    return n < cap ? n : cap;
}

static uint64_t board_now(void *ctx) {
    (void)ctx;
    return UPDRAFT_TIME_UNKNOWN;
}

static long board_fetch_manifest(void *ctx, const uint8_t *uri, size_t uri_len, uint8_t *buf,
                                 size_t cap) {
    (void)ctx;
    (void)uri;
    (void)uri_len;
    return (long)receive(buf, cap);
}

static long board_fetch_block(void *ctx, uint32_t offset, uint8_t *buf, size_t len,
                              const uint8_t **token, size_t *token_len) {
    (void)ctx;
    (void)offset;
    (void)token;
    (void)token_len;
    return (long)receive(buf, len);
}

static uint32_t board_authorize(void *ctx, const UpdraftAction *a) {
    (void)ctx;
    (void)a;
    return UPDRAFT_DECISION_AUTHORIZE;
}

static void board_report(void *ctx, const UpdraftAction *a) {
    (void)ctx;
    *STAND_IN_REGISTER = a->kind == UPDRAFT_ACTION_KIND_NOTIFY     ? a->state
                         : a->kind == UPDRAFT_ACTION_KIND_PROGRESS ? a->percent
                                                                   : 0;
}

static void reset(void) {
    /* A product writes SCB->AIRCR (SYSRESETREQ) here. */
    for (;;) {
    }
}

int main(void) {
    UpdraftFlash flash = {
        .ctx = NULL,
        .read = mcu_read,
        .write = mcu_write,
        .erase = mcu_erase,
        .capacity = FLASH_SIZE,
        .write_size = 4,
        .erase_size = SECTOR,
    };
    UpdraftKey key = {.algorithm = KEY_ALGORITHM, .bytes = TRUSTED_KEY, .len = sizeof TRUSTED_KEY};
    UpdraftConfig config = {
        .layout = updraft_layout_packed(SLOT_SIZE, SECTOR),
        .keys = &key,
        .key_count = 1,
        .resume = UPDRAFT_RESUME,
        .block_size = 512,
        .protocols = UPDRAFT_PROTOCOL_COAP | UPDRAFT_PROTOCOL_COAPS,
        .auto_execute = 0,
    };
    for (int i = 0; i < 16; i++) {
        config.vendor_id[i] = 0x11;
        config.class_id[i] = 0x22;
    }
    struct example_board board = {
        .ctx = NULL,
        .now = board_now,
        .fetch_manifest = board_fetch_manifest,
        .fetch_block = board_fetch_block,
        .authorize = board_authorize,
        .report = board_report,
    };
    /* On the stack, like the Rust firmware's core: no static RAM. */
    UpdraftDevice dev;
    uint8_t buf[512];

    UpdraftBootDecision decision;
    (void)updraft_select_boot_slot(&flash, &config.layout, &decision);
    if (updraft_start(&dev, &flash, &config, board_now(NULL)) != UPDRAFT_OK) {
        reset();
    }
    if (updraft_state(&dev) == 3) {
        (void)updraft_self_test(&dev, board_now(NULL), 1);
    }
    for (;;) {
        size_t n = receive(buf, sizeof buf);
        if (n > 0) {
            (void)updraft_write_package(&dev, board_now(NULL), 0, buf, n);
        }
        if (example_drain(&dev, &board, buf, sizeof buf) == EXAMPLE_REBOOT) {
            reset();
        }
    }
}
