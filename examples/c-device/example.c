/* SPDX-License-Identifier: Apache-2.0 */
#include "example.h"

/* Refusals of the /5 rules (4.00, 4.05, 5.03) are the server's business, not a failure of the
 * program; anything else (a NULL, a flash failure) is. */
static int fatal(int32_t rc) {
    return rc < 0 && rc != UPDRAFT_ERR_BAD_REQUEST && rc != UPDRAFT_ERR_METHOD_NOT_ALLOWED &&
           rc != UPDRAFT_ERR_SERVICE_UNAVAILABLE;
}

int example_drain(UpdraftDevice *dev, const struct example_board *b, uint8_t *buf, size_t cap) {
    UpdraftAction a;
    int32_t rc;
    while ((rc = updraft_poll_action(dev, &a)) == 1) {
        uint64_t now = b->now(b->ctx);
        switch (a.kind) {
        case UPDRAFT_ACTION_KIND_FETCH_MANIFEST: {
            const uint8_t *uri;
            size_t uri_len;
            updraft_string(dev, UPDRAFT_STRING_PACKAGE_URI, &uri, &uri_len);
            long n = b->fetch_manifest(b->ctx, uri, uri_len, buf, cap);
            rc = n < 0 ? updraft_download_failed(dev, now, UPDRAFT_FAILURE_NOT_FOUND)
                       : updraft_manifest_fetched(dev, now, buf, (size_t)n);
            break;
        }
        case UPDRAFT_ACTION_KIND_FETCH_BLOCK: {
            const uint8_t *token = NULL;
            size_t token_len = 0;
            size_t len = a.len < cap ? a.len : cap;
            long n = b->fetch_block(b->ctx, a.offset, buf, len, &token, &token_len);
            if (n < 0) {
                return EXAMPLE_INTERRUPTED;
            }
            rc = updraft_block(dev, now, a.offset, buf, (size_t)n, token, token_len);
            break;
        }
        case UPDRAFT_ACTION_KIND_AUTHORIZE_DOWNLOAD:
            rc = updraft_download_authorization(dev, now, b->authorize(b->ctx, &a));
            break;
        case UPDRAFT_ACTION_KIND_AUTHORIZE_INSTALL:
            rc = updraft_install_authorization(dev, now, b->authorize(b->ctx, &a));
            break;
        case UPDRAFT_ACTION_KIND_REBOOT:
            return EXAMPLE_REBOOT;
        default: /* NOTIFY, PROGRESS, IMAGE_STATE, COMPLETED */
            b->report(b->ctx, &a);
            rc = UPDRAFT_OK;
            break;
        }
        if (fatal(rc)) {
            return rc;
        }
    }
    return rc < 0 ? rc : EXAMPLE_IDLE;
}
