/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for age input: the header parser (strict, so whatever parses must
 * re-encode to the very same bytes) and the whole decryption path behind it (X25519
 * identity or passphrase, threaded fd path and incremental reader, which must agree).
 * Seeds in tests/fuzz/corpus/age-header/ are encrypted to the identity below and to
 * the passphrase "fuzz" at work factor 2.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Included rather than linked, for coverage (see fuzz-config.c). */
#include "../../common/age-header.c"
#include "../../common/age-keys.c"
#include "../../common/age-reader.c"
#include "../../common/age-stream.c"
#include "../../common/bech32.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_IDENTITY "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6"

/* Re-encodes a parsed header; strict parsing means it must equal the input bytes. */
static void check_reencode(const age_header *h, const uint8_t *data)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;

        text = strdup(AGE_VERSION_LINE "\n");
        if (!text)
                return;
        len = strlen(text);
        for (size_t i = 0; i < h->n_stanzas; i++)
                if (age_stanza_append(&text, &len, (const char *const *) h->stanzas[i].args,
                                      h->stanzas[i].n_args, h->stanzas[i].body, h->stanzas[i].body_len) < 0)
                        return;
        if (len != h->mac_input_len - 3 || memcmp(text, data, len) != 0)
                abort();
}

/* Decrypts with the fd path and the reader; both must give the same result. */
static void check_decrypt(int fd, const mamori_age_decrypt_opts *o)
{
        int out = memfd_create("fuzz-out", MFD_CLOEXEC);
        mamori_age_reader *rd = NULL;
        uint8_t buf[4096];
        ssize_t n = 0;
        int r1, r2;

        if (out < 0)
                return;
        lseek(fd, 0, SEEK_SET);
        r1 = mamori_age_decrypt_fd(fd, out, o);
        lseek(fd, 0, SEEK_SET);
        r2 = mamori_age_reader_new(fd, o, &rd);
        while (r2 >= 0 && (n = mamori_age_reader_read(rd, buf, sizeof(buf))) > 0)
                ;
        if (r2 >= 0 && n < 0)
                r2 = (int) n;
        mamori_age_reader_free(rd);
        close(out);
        if (r1 != r2 && r1 != -ENOMEM && r2 != -ENOMEM)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static mamori_age_identity *id;
        age_header *h = NULL;
        int r, fd;

        if (size > MAMORI_AGE_HEADER_MAX + 4 * 65552)
                return 0;
        if (!id && (sodium_init() < 0 || mamori_age_identity_parse(FUZZ_IDENTITY, &id) < 0))
                abort();

        r = age_header_parse(data, size, &h);
        if (r == 0) {
                if (h->len > size || h->mac_input_len + 45 != h->len || h->n_stanzas == 0)
                        abort();
                check_reencode(h, data);
                age_header_free(h);
        } else if (r != -EBADMSG && r != -ENODATA && r != -ENOMEM)
                abort();

        fd = memfd_create("fuzz-in", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (write(fd, data, size) == (ssize_t) size) {
                mamori_age_identity *ids[] = { id };
                check_decrypt(fd, &(mamori_age_decrypt_opts) { .identities = ids, .n_identities = 1,
                                                               .threads = 1 });
                check_decrypt(fd, &(mamori_age_decrypt_opts) { .identities = ids, .n_identities = 1,
                                                               .threads = 2 });
                /* A low cap keeps scrypt cheap: anything above it is refused before work. */
                check_decrypt(fd, &(mamori_age_decrypt_opts) { .passphrase = "fuzz",
                                                               .scrypt_max_log2n = 4, .threads = 1 });
        }
        close(fd);
        return 0;
}
