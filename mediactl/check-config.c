/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl check-config [FILE]: validates a policy file before it is installed, like
 * sshd -t or udevadm verify (DESIGN.md "Configuration"). Parses FILE (default: the
 * installed /etc/mamori/mamori.conf) with the same strict parser every component uses.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "config.h"
#include "mamori-config.h"

int verb_check_config(int argc, char *argv[]);

/* Checks one file; returns 0 when valid, 1 when not (or on error), 2 on a usage error. */
int verb_check_config(int argc, char *argv[])
{
        _cleanup_free_ char *error = NULL;
        mamori_config *c = NULL;
        const char *path = MAMORI_CONFIG_PATH;
        int r;

        if (argc > 2 || (argc == 2 && argv[1][0] == '-' && argv[1][1] != '\0')) {
                fprintf(stderr, "Usage: mediactl check-config [FILE]\n"
                                "Checks a mamori policy file (default %s).\n", MAMORI_CONFIG_PATH);
                return 2;
        }
        if (argc == 2)
                path = argv[1];

        r = mamori_config_load(path, &c, &error);
        if (r < 0) {
                if (error)
                        fprintf(stderr, "%s\n", error);
                else
                        fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return 1;
        }
        mamori_config_free(c);
        printf("%s: OK\n", path);
        return 0;
}
