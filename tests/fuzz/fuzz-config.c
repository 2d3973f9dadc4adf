/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the policy-file parser: the input is written to a memfd and
 * loaded through mamori_config_load() by its /proc/self/fd path, exactly as a file.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Included rather than linked: libmamori-common is built without -fsanitize=fuzzer-no-link,
 * so a linked parser would give libFuzzer no coverage to steer by. */
#include "../../common/config.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5's bison parser has no %destructor: on some syntax errors (a string where a
 * setting name belongs) it drops the string token's buffer. That leak is libconfig's, tens
 * of bytes per rejected file; ours must still be found, so only allocations made inside
 * libconfig are suppressed. */
const char *__lsan_default_suppressions(void)
{
        return "leak:libconfig.so\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_close_ int fd = -1;
        mamori_config *c = NULL;
        char *error = NULL;
        char path[64];
        int r;

        /* Slightly over the parser's own cap, so that the "too large" path is reached too. */
        if (size > MAMORI_CONFIG_MAX_SIZE + 16)
                return 0;
        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        if (fd < 0)
                abort();
        if (size > 0 && write(fd, data, size) != (ssize_t) size)
                abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

        r = mamori_config_load(path, &c, &error);
        /* Contract: success gives a config and no error; -EINVAL always comes with a message. */
        if (r == 0 && (!c || error))
                abort();
        if (r == -EINVAL && !error)
                abort();
        /* Whatever was accepted is within the table's bounds (R-EV-11 minimums included). */
        for (size_t i = 0; r == 0 && i < ELEMENTSOF(config_table); i++) {
                const ConfigKey *k = config_table + i;
                const void *field = (const uint8_t *) c + k->offset;

                if (k->type == CFG_UINT32 &&
                    (*(const uint32_t *) field < k->min || *(const uint32_t *) field > k->max))
                        abort();
                if (k->type == CFG_STRING && (strlen(*(char *const *) field) > k->max ||
                                              (k->valid && !k->valid(*(char *const *) field))))
                        abort();
        }
        mamori_config_free(c);
        free(error);
        return 0;
}
