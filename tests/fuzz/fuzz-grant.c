/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libFuzzer: the signed-grant parsers (common/grant.h) that see bytes from other
 * terminals and from managers: the grant decoder and verifier, the revocation
 * verifier, the text armor, the decision entry, and the name, number and mode
 * checks. The first byte picks the parser. A grant or entry that decodes must
 * re-encode to exactly itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* NUL-terminated copy of the input for the string checks. */
static void strings(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        if (!s)
                return;
        memcpy(s, data, size);
        s[size] = 0;
        uint8_t modes, id[MAMORI_GRANT_ID_LEN], pk[MAMORI_GRANT_PK_LEN];
        (void)mamori_media_no_valid(s);
        (void)mamori_name_valid(s);
        (void)mamori_host_valid(s, true);
        if (mamori_modes_parse(s, &modes) == 0 && (modes == 0 || (modes & ~MAMORI_MODE_ALL)))
                abort();
        (void)mamori_grant_id_parse(s, id);
        (void)mamori_pubkey_parse(s, pk);
        free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > 8 * MAMORI_GRANT_MAX)
                return 0;
        uint8_t which = data[0], buf[MAMORI_GRANT_MAX];
        data++, size--;
        mamori_grant g;
        switch (which % 5) {
        case 0:
                if (mamori_grant_decode(data, size, &g) == 0) {
                        int n = mamori_grant_encode(&g, buf);
                        if (n != (int)size || memcmp(buf, data, size) != 0)
                                abort(); /* canonical: one encoding per grant */
                }
                (void)mamori_grant_verify(data, size, &g);
                break;
        case 1: {
                uint8_t id[MAMORI_GRANT_ID_LEN], pk[MAMORI_GRANT_PK_LEN];
                int64_t t;
                (void)mamori_revoke_verify(data, size, id, pk, &t);
                break;
        }
        case 2: {
                int n = mamori_grant_dearmor((const char *)data, size, buf);
                if (n > (int)MAMORI_GRANT_MAX)
                        abort();
                if (n > 0)
                        (void)mamori_grant_verify(buf, n, &g);
                break;
        }
        case 3: {
                mamori_entry e;
                uint8_t out[MAMORI_ENTRY_MAX];
                if (mamori_entry_decode(data, size, &e) == 0) {
                        size_t n = mamori_entry_encode(&e, out);
                        if (n != size || memcmp(out, data, size) != 0)
                                abort();
                }
                break;
        }
        default:
                strings(data, size);
        }
        return 0;
}
