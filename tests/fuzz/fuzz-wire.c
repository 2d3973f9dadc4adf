/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libFuzzer: the wire decoder and every typed getter, and the record decoder (the two
 * parsers that see bytes from other processes). Accepted input must re-encode to
 * exactly itself (records) and never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > MAMORI_MSG_MAX + 16)
                return 0;
        mamori_msg *m;
        if (mamori_msg_decode(data, size, &m) == 0) {
                for (size_t i = 0; i < m->n_fields; i++) {
                        const char *s;
                        uint64_t v;
                        char key[MAMORI_PAIR_KEY_MAX + 1];
                        (void)mamori_field_str(&m->fields[i], MAMORI_STR_MAX, &s);
                        (void)mamori_field_uint(&m->fields[i], 8, &v);
                        (void)mamori_field_pair(&m->fields[i], key, &s);
                }
                const char *s;
                (void)mamori_msg_get_str(m, MAMORI_F_EV_TYPE, 64, &s);
                mamori_msg_free(m);
        }
        mamori_record *rec;
        if (mamori_record_decode(data, size, &rec) == 0) {
                uint8_t *b;
                int n = mamori_record_encode(rec, &b);
                /* canonical: one encoding per record */
                if (n != (int)size || memcmp(b, data, size) != 0)
                        abort();
                free(b);
                mamori_record_free(rec);
        }
        return 0;
}
