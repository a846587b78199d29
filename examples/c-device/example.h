/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The part of a C firmware that drives the Updraft core: drain its actions, answer each one
 * through the board (transport, authorization, reporting), feed the answers back as events.
 * The same file builds for the host test program (host_main.c) and for a Cortex-M4F
 * (mcu_main.c).
 */
#ifndef UPDRAFT_EXAMPLE_H
#define UPDRAFT_EXAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "updraft_device.h"

/* What a product wires in: its transport, clock, user or policy, and server reports. */
struct example_board {
    void *ctx;
    /* Unix seconds, or UPDRAFT_TIME_UNKNOWN. */
    uint64_t (*now)(void *ctx);
    /* Fetch the envelope at the Package URI into buf; its length, or -1 on failure. */
    long (*fetch_manifest)(void *ctx, const uint8_t *uri, size_t uri_len, uint8_t *buf, size_t cap);
    /* Fetch len image bytes at offset into buf; the count, or -1 if the transfer broke off.
     * *token (ETag) may be set to the resource's resume token. */
    long (*fetch_block)(void *ctx, uint32_t offset, uint8_t *buf, size_t len,
                        const uint8_t **token, size_t *token_len);
    /* Answer an authorization question (UPDRAFT_DECISION_*). */
    uint32_t (*authorize)(void *ctx, const UpdraftAction *action);
    /* Notify, progress, image state, completed: what a device tells its server. */
    void (*report)(void *ctx, const UpdraftAction *action);
};

/* Why example_drain returned. */
enum example_outcome {
    EXAMPLE_IDLE = 0,        /* no action left: wait for the next event */
    EXAMPLE_REBOOT = 1,      /* the core asks for a reboot */
    EXAMPLE_INTERRUPTED = 2, /* a transfer broke off (the board lost its link or its power) */
};

/* Drain and carry out the core's actions; `buf` receives envelopes and blocks (at least the
 * block size; 4096 bytes for envelopes). Returns an example_outcome, or a negative
 * UPDRAFT_ERR_* if the core refused an answer for a reason other than its /5 rules. */
int example_drain(UpdraftDevice *dev, const struct example_board *board, uint8_t *buf, size_t cap);

#endif
