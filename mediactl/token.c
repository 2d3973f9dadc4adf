/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl token register|retire|list (R-AUTH-4): the authentication tokens. An
 * administrator registers a USB device (vendor, product, serial) to one user; where the
 * policy ties that user to a token (auth.token_users, auth.token_groups) they log in
 * only while it is plugged in, and pulling it locks their sessions.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "mediactl.h"

static void token_usage(FILE *f)
{
        fputs("Usage: mediactl token register --no NO --user USER --vendor HEX4 --product HEX4 --serial S\n"
              "       mediactl token retire NO\n"
              "       mediactl token list [--format table|json]\n"
              "Common: --socket PATH\n",
              f);
}

typedef struct list_state {
        output_format fmt;
        uint64_t n;
} list_state;

static int print_token(const mamori_msg *m, void *u)
{
        list_state *x = u;
        const char *no = "", *user = "", *vendor = "", *product = "", *serial = "", *state = "";
        uint8_t here = 0;
        (void)mamori_msg_get_str(m, MAMORI_F_MEDIA_NO, 64, &no);
        (void)mamori_msg_get_str(m, MAMORI_F_USER, 32, &user);
        (void)mamori_msg_get_str(m, MAMORI_F_DEV_VENDOR, 4, &vendor);
        (void)mamori_msg_get_str(m, MAMORI_F_DEV_PRODUCT, 4, &product);
        (void)mamori_msg_get_str(m, MAMORI_F_DEV_SERIAL, 128, &serial);
        (void)mamori_msg_get_str(m, MAMORI_F_MEDIA_STATE, 16, &state);
        (void)mamori_msg_get_u8(m, MAMORI_F_TOKEN_PRESENT, &here);
        if (x->fmt == FORMAT_JSON) {
                fputs(x->n ? ",\n{\"no\":" : "[\n{\"no\":", stdout);
                print_json_string(stdout, no);
                fputs(",\"user\":", stdout);
                print_json_string(stdout, user);
                printf(",\"vendor\":\"%s\",\"product\":\"%s\",\"serial\":", vendor, product);
                print_json_string(stdout, serial);
                fputs(",\"state\":", stdout);
                print_json_string(stdout, state);
                printf(",\"plugged_in\":%s}", here ? "true" : "false");
        } else {
                print_text_safe(stdout, no);
                fputs("  ", stdout);
                print_text_safe(stdout, user);
                printf("  %s:%s \"", vendor, product);
                print_text_safe(stdout, serial);
                printf("\"  %s%s\n", state, here ? "  plugged in" : "");
        }
        x->n++;
        return 0;
}

int verb_token(int argc, char *argv[])
{
        if (argc < 2) {
                token_usage(stderr);
                return EXIT_USAGE;
        }
        const char *sub = argv[1], *sock = NULL, *no = NULL, *user = NULL, *vendor = NULL, *product = NULL,
                   *serial = NULL, *format = "table";
        static const struct option lo[] = {
                {"socket", required_argument, NULL, 's'}, {"no", required_argument, NULL, 'n'},
                {"user", required_argument, NULL, 'u'},   {"vendor", required_argument, NULL, 'V'},
                {"product", required_argument, NULL, 'P'}, {"serial", required_argument, NULL, 'S'},
                {"format", required_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
                {},
        };
        int c;
        optind = 2;
        while ((c = getopt_long(argc, argv, "h", lo, NULL)) >= 0)
                switch (c) {
                case 's': sock = optarg; break;
                case 'n': no = optarg; break;
                case 'u': user = optarg; break;
                case 'V': vendor = optarg; break;
                case 'P': product = optarg; break;
                case 'S': serial = optarg; break;
                case 'f': format = optarg; break;
                case 'h': token_usage(stdout); return 0;
                default: token_usage(stderr); return EXIT_USAGE;
                }
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *ans = NULL;
        uint16_t type;
        if (streq(sub, "register")) {
                if (optind != argc || !no || !user || !vendor || !product || !serial) {
                        token_usage(stderr);
                        return EXIT_USAGE;
                }
                type = MAMORI_MSG_TOKEN_REGISTER;
        } else if (streq(sub, "retire")) {
                if (optind + 1 != argc) {
                        token_usage(stderr);
                        return EXIT_USAGE;
                }
                no = argv[optind];
                type = MAMORI_MSG_TOKEN_RETIRE;
        } else if (streq(sub, "list")) {
                if (optind != argc) {
                        token_usage(stderr);
                        return EXIT_USAGE;
                }
                type = MAMORI_MSG_TOKEN_LIST;
        } else {
                token_usage(stderr);
                return EXIT_USAGE;
        }
        output_format fmt = format_from_string(format);
        if (fmt != FORMAT_TABLE && fmt != FORMAT_JSON) {
                ctl_bad_value("--format is table or json", format);
                return EXIT_USAGE;
        }
        if (mamori_msg_new(type, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        if (no)
                mamori_msg_put_str(req, MAMORI_F_MEDIA_NO, no);
        if (user)
                mamori_msg_put_str(req, MAMORI_F_USER, user);
        if (vendor)
                mamori_msg_put_str(req, MAMORI_F_DEV_VENDOR, vendor);
        if (product)
                mamori_msg_put_str(req, MAMORI_F_DEV_PRODUCT, product);
        if (serial)
                mamori_msg_put_str(req, MAMORI_F_DEV_SERIAL, serial);
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        if (type == MAMORI_MSG_TOKEN_LIST) {
                list_state x = {.fmt = fmt};
                int st = ctl_stream(fd, req, print_token, &x);
                if (st < 0)
                        return EXIT_UNAVAILABLE;
                if (fmt == FORMAT_JSON)
                        puts(x.n ? "\n]" : "[]");
                return st == MAMORI_OK ? 0 : ctl_exit_for(st);
        }
        int st = ctl_call(fd, req, &ans);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        return st == MAMORI_OK ? 0 : ctl_exit_for(st);
}
