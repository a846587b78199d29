/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A full update through the Updraft C API on a simulated NOR flash (a C array), on the host.
 *
 *   c-device ALG PUBKEY ENVELOPE IMAGE FLASH_OUT
 *
 * ALG is ed25519 or es256, PUBKEY the raw public key, ENVELOPE the signed SUIT envelope,
 * IMAGE the bytes the simulated server serves for it, FLASH_OUT where the flash is written at
 * the end. The device: boots (slot selection), pulls the envelope, defers the download once,
 * downloads in 512-byte blocks, loses power halfway and resumes, installs, reboots into the
 * new image on trial and confirms it. Exit status: 0 if the update completed with result 1
 * (success), 3 if it completed with another result, 1 on an API or flash error, 2 on usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example.h"

#define SLOT_SIZE (64u * 1024u)
#define SECTOR 4096u
#define WRITE_SIZE 4u
#define FLASH_MAX (2u * SLOT_SIZE + 64u * 1024u)
#define BLOCK 512u

/* ---- simulated NOR flash ------------------------------------------------------------------ */

struct sim_flash {
    uint8_t mem[FLASH_MAX];
    uint32_t capacity;
    unsigned long writes, erases, violations;
};

static int32_t sim_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len) {
    struct sim_flash *f = ctx;
    if ((uint64_t)offset + len > f->capacity) {
        return -1;
    }
    memcpy(buf, f->mem + offset, len);
    return 0;
}

/* NOR programming only clears bits: a write that would set one is refused and counted. */
static int32_t sim_write(void *ctx, uint32_t offset, const uint8_t *data, size_t len) {
    struct sim_flash *f = ctx;
    if ((uint64_t)offset + len > f->capacity || offset % WRITE_SIZE || len % WRITE_SIZE) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if ((f->mem[offset + i] & data[i]) != data[i]) {
            f->violations++;
            return -1;
        }
    }
    for (size_t i = 0; i < len; i++) {
        f->mem[offset + i] &= data[i];
    }
    f->writes++;
    return 0;
}

static int32_t sim_erase(void *ctx, uint32_t from, uint32_t to) {
    struct sim_flash *f = ctx;
    if (to < from || to > f->capacity || from % SECTOR || to % SECTOR) {
        return -1;
    }
    memset(f->mem + from, 0xFF, to - from);
    f->erases++;
    return 0;
}

/* ---- the simulated server and user -------------------------------------------------------- */

struct host {
    const uint8_t *envelope;
    size_t envelope_len;
    const uint8_t *image;
    size_t image_len;
    uint64_t clock;
    /* Power is cut once, when this many image bytes have been served (0: never). */
    size_t cut_after;
    size_t served;
    int cut_done;
    int deferred_once;
    int completed;
    int result;
};

static uint64_t host_now(void *ctx) {
    struct host *h = ctx;
    return h->clock++;
}

static long host_fetch_manifest(void *ctx, const uint8_t *uri, size_t uri_len, uint8_t *buf,
                                size_t cap) {
    struct host *h = ctx;
    printf("fetch manifest %.*s\n", (int)uri_len, (const char *)uri);
    if (h->envelope_len > cap) {
        return -1;
    }
    memcpy(buf, h->envelope, h->envelope_len);
    return (long)h->envelope_len;
}

static long host_fetch_block(void *ctx, uint32_t offset, uint8_t *buf, size_t len,
                             const uint8_t **token, size_t *token_len) {
    struct host *h = ctx;
    static const uint8_t etag[] = "\"image-v2\"";
    if (h->cut_after && !h->cut_done && h->served >= h->cut_after) {
        h->cut_done = 1;
        printf("power cut after %zu image bytes (next block at %u)\n", h->served, offset);
        return -1;
    }
    if (h->cut_done == 1) {
        h->cut_done = 2;
        printf("first block after the cut at %u\n", offset);
    }
    if (offset >= h->image_len) {
        return 0;
    }
    size_t n = h->image_len - offset < len ? h->image_len - offset : len;
    memcpy(buf, h->image + offset, n);
    h->served += n;
    *token = etag;
    *token_len = sizeof etag - 1;
    return (long)n;
}

static uint32_t host_authorize(void *ctx, const UpdraftAction *a) {
    struct host *h = ctx;
    if (a->kind == UPDRAFT_ACTION_KIND_AUTHORIZE_DOWNLOAD) {
        printf("authorize download: sequence %llu, %u bytes\n", (unsigned long long)a->sequence,
               a->image_size);
        if (!h->deferred_once) {
            h->deferred_once = 1;
            printf("  -> defer\n");
            return UPDRAFT_DECISION_DEFER;
        }
    } else {
        printf("authorize install: sequence %llu\n", (unsigned long long)a->sequence);
    }
    printf("  -> authorize\n");
    return UPDRAFT_DECISION_AUTHORIZE;
}

static void host_report(void *ctx, const UpdraftAction *a) {
    struct host *h = ctx;
    switch (a->kind) {
    case UPDRAFT_ACTION_KIND_NOTIFY:
        printf("notify state %u result %u\n", a->state, a->result);
        break;
    case UPDRAFT_ACTION_KIND_PROGRESS:
        printf("progress %u%%\n", a->percent);
        break;
    case UPDRAFT_ACTION_KIND_IMAGE_STATE:
        printf("image state %u\n", a->image_state);
        break;
    case UPDRAFT_ACTION_KIND_COMPLETED:
        printf("completed result %u\n", a->result);
        h->completed = 1;
        h->result = a->result;
        break;
    default:
        break;
    }
}

/* ---- main ----------------------------------------------------------------------------------- */

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    uint8_t *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *more = realloc(data, cap);
            if (!more) {
                free(data);
                fclose(f);
                return NULL;
            }
            data = more;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        if (got == 0) {
            break;
        }
        n += got;
    }
    fclose(f);
    *len = n;
    return data;
}

static struct sim_flash flash_mem;
static UpdraftDevice device; /* 8-byte aligned, never moved */
static uint8_t buf[4096];

#define CHECK(call)                                                                              \
    do {                                                                                         \
        int32_t rc_ = (call);                                                                    \
        if (rc_ < 0) {                                                                           \
            fprintf(stderr, "%s: error %d\n", #call, rc_);                                       \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s ed25519|es256 PUBKEY ENVELOPE IMAGE FLASH_OUT\n", argv[0]);
        return 2;
    }
    uint32_t alg = strcmp(argv[1], "es256") == 0 ? UPDRAFT_ALG_ES256 : UPDRAFT_ALG_ED25519;
    size_t key_len, envelope_len, image_len;
    uint8_t *key = read_file(argv[2], &key_len);
    uint8_t *envelope = read_file(argv[3], &envelope_len);
    uint8_t *image = read_file(argv[4], &image_len);
    if (!key || !envelope || !image) {
        return 2;
    }

    UpdraftLayout layout = updraft_layout_packed(SLOT_SIZE, SECTOR);
    memset(flash_mem.mem, 0xFF, sizeof flash_mem.mem);
    flash_mem.capacity = layout.envelope.offset + layout.envelope.size;
    if (flash_mem.capacity > FLASH_MAX) {
        fprintf(stderr, "layout needs %u bytes\n", flash_mem.capacity);
        return 1;
    }
    UpdraftFlash flash = {
        .ctx = &flash_mem,
        .read = sim_read,
        .write = sim_write,
        .erase = sim_erase,
        .capacity = flash_mem.capacity,
        .write_size = WRITE_SIZE,
        .erase_size = SECTOR,
    };
    UpdraftKey trusted = {.algorithm = alg, .bytes = key, .len = key_len};
    UpdraftConfig config = {
        .layout = layout,
        .keys = &trusted,
        .key_count = 1,
        .resume = UPDRAFT_RESUME,
        .block_size = BLOCK,
        .protocols = UPDRAFT_PROTOCOL_COAP | UPDRAFT_PROTOCOL_COAPS,
        .auto_execute = 0,
    };
    /* The test's vendor and class ids: 0x11.. and 0x22.. */
    memset(config.vendor_id, 0x11, sizeof config.vendor_id);
    memset(config.class_id, 0x22, sizeof config.class_id);

    struct host host = {
        .envelope = envelope,
        .envelope_len = envelope_len,
        .image = image,
        .image_len = image_len,
        .clock = 1800000000u,
        .cut_after = image_len / 2,
    };
    struct example_board board = {
        .ctx = &host,
        .now = host_now,
        .fetch_manifest = host_fetch_manifest,
        .fetch_block = host_fetch_block,
        .authorize = host_authorize,
        .report = host_report,
    };
    printf("device memory: %zu of %zu bytes\n", updraft_device_used_size(), sizeof device);

    int uri_written = 0;
    for (int boot = 0; boot < 6 && !host.completed; boot++) {
        UpdraftBootDecision decision;
        CHECK(updraft_select_boot_slot(&flash, &layout, &decision));
        printf("boot %d: slot %c%s\n", boot, decision.slot == UPDRAFT_SLOT_A ? 'A' : 'B',
               decision.trial ? " (trial)" : "");
        CHECK(updraft_start(&device, &flash, &config, host_now(&host)));
        int outcome = EXAMPLE_IDLE;
        for (int round = 0; round < 16 && !host.completed; round++) {
            outcome = example_drain(&device, &board, buf, sizeof buf);
            CHECK(outcome);
            if (outcome != EXAMPLE_IDLE) {
                break;
            }
            uint64_t now = host_now(&host);
            int32_t state = updraft_state(&device);
            int32_t result = updraft_result(&device);
            if (state == 0 && !uri_written) {
                static const char uri[] = "coaps://updates.example/fw.suit";
                uri_written = 1;
                CHECK(updraft_write_max_defer_period(&device, now, 3600));
                CHECK(updraft_write_package_uri(&device, now, (const uint8_t *)uri,
                                                sizeof uri - 1));
            } else if (state == 1 && result == 11) {
                printf("resume the deferred download\n");
                CHECK(updraft_resume(&device, now));
            } else if (state == 2) {
                CHECK(updraft_execute(&device, now));
            } else if (state == 3) {
                printf("self-test passed\n");
                CHECK(updraft_self_test(&device, now, 1));
            } else {
                break;
            }
        }
        if (outcome == EXAMPLE_INTERRUPTED) {
            continue; /* power back on: the next boot resumes from the journal */
        }
    }

    UpdraftBootInfo info;
    UpdraftStats stats;
    CHECK(updraft_boot_info(&device, &info));
    CHECK(updraft_stats(&device, &stats));
    printf("active slot %c, installed sequence %llu\n", info.active_slot == UPDRAFT_SLOT_A ? 'A' : 'B',
           (unsigned long long)info.installed_sequence);
    printf("blocks processed %u, dropped %u; flash writes %lu, erases %lu, NOR violations %lu\n",
           stats.blocks_processed, stats.blocks_dropped, flash_mem.writes, flash_mem.erases,
           flash_mem.violations);

    FILE *out = fopen(argv[5], "wb");
    if (!out || fwrite(flash_mem.mem, 1, flash_mem.capacity, out) != flash_mem.capacity ||
        fclose(out) != 0) {
        perror(argv[5]);
        return 1;
    }
    free(key);
    free(envelope);
    free(image);
    if (!host.completed) {
        fprintf(stderr, "the update did not complete\n");
        return 1;
    }
    if (flash_mem.violations) {
        fprintf(stderr, "the core wrote over unerased flash\n");
        return 1;
    }
    return host.result == 1 ? 0 : 3;
}
