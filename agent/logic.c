/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The agent's pure decisions (see logic.h): no I/O here, so the unit tests reach all of it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "logic.h"
#include "grant.h"
#include "i18n.h"
#include "wire.h"

const char *agent_class_verdict_to_string(int v)
{
        static const char *const names[_AGENT_CLASS_VERDICT_MAX] = {
                [AGENT_LOCAL_ALLOW] = "local-allow",
                [AGENT_STORAGE] = "storage",
                [AGENT_BADUSB] = "badusb",
                [AGENT_REFUSE] = "refuse",
        };
        return v >= 0 && v < _AGENT_CLASS_VERDICT_MAX ? names[v] : "invalid";
}

bool agent_verdict_mounts(int v)
{
        return v == MAMORI_VERDICT_ALLOWED || v == MAMORI_VERDICT_EXEMPT || v == MAMORI_VERDICT_AUDIT;
}

bool agent_verdict_authorises(int v)
{
        return agent_verdict_mounts(v) || v == MAMORI_VERDICT_IDENTIFY;
}

const char *agent_verdict_recorded(int v)
{
        return agent_verdict_mounts(v) ? "allowed" : v == MAMORI_VERDICT_IDENTIFY ? "identify" : "blocked";
}

static const struct {
        const char *reason, *text;
} refusal_texts[] = {
        {"unregistered", N_("this medium is not registered.")},
        {"retired", N_("this medium's registration was retired.")},
        {"registration-expired", N_("this medium's period of use has ended.")},
        {"not-yet-in-use", N_("this medium's period of use has not started.")},
        {"port-disabled", N_("this USB port is disabled.")},
        {"badusb", N_("a keyboard that is also storage is refused.")},
        {"class-refused", N_("this kind of device is not allowed.")},
        {"ambiguous-identity", N_("more than one medium matches this identity.")},
        {"policyd-unreachable", N_("the policy service cannot be reached.")},
        {"identity-unusable", N_("the device's identity cannot be used.")},
        {"no-mark-found", N_("the medium's registered mark could not be found.")},
        {"mark-unreadable", N_("the medium's registered mark could not be read.")},
};

void agent_refusal_message(const char *reason, const char *vendor, const char *product, const char *serial,
                           const char *port, char *buf, size_t size)
{
        const char *text = N_("this medium is not allowed.");
        for (size_t i = 0; i < ELEMENTSOF(refusal_texts); i++)
                if (streq(refusal_texts[i].reason, reason))
                        text = refusal_texts[i].text;
        const char *local = _(text);
        int n = snprintf(buf, size, "\r\nmamori: USB %s:%s \"%s\" (port %s): %s\r\n", vendor, product, serial, port,
                         local);
        if (strcmp(local, text) != 0 && n > 0 && (size_t)n < size)
                snprintf(buf + n, size - n, "mamori: USB %s:%s \"%s\" (port %s): %s\r\n", vendor, product, serial,
                         port, text);
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static int hex2(const char *p)
{
        int a = hexval(p[0]), b = a < 0 ? -1 : hexval(p[1]);
        return b < 0 ? -EINVAL : a * 16 + b;
}

int agent_ifaces_parse(const char *s, agent_iface *ret, size_t max)
{
        if (!s || s[0] != ':')
                return -EINVAL;
        size_t n = 0;
        const char *p = s + 1;
        while (*p) {
                int v[3];
                for (int i = 0; i < 3; i++)
                        if ((v[i] = hex2(p + 2 * i)) < 0)
                                return -EINVAL;
                if (p[6] != ':' || n == max)
                        return -EINVAL;
                ret[n++] = (agent_iface){v[0], v[1], v[2]};
                p += 7;
        }
        return n > 0 ? (int)n : -EINVAL;
}

int agent_classes_parse(const char *s, uint8_t *ret, size_t max)
{
        size_t n = 0;
        const char *p = s;
        while (*p) {
                if (*p == ' ' || *p == ',') {
                        p++;
                        continue;
                }
                int v = hex2(p);
                if (v < 0 || (p[2] && p[2] != ' ' && p[2] != ',') || n == max)
                        return -EINVAL;
                ret[n++] = v;
                p += 2;
        }
        return (int)n;
}

static bool class_in(uint8_t c, const uint8_t *l, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (l[i] == c)
                        return true;
        return false;
}

agent_class_verdict agent_classify(const agent_iface *ifs, size_t n, const uint8_t *allowed, size_t n_allowed)
{
        bool storage = false, hid = false, all_allowed = n > 0;
        for (size_t i = 0; i < n; i++) {
                storage |= ifs[i].cls == USB_CLASS_STORAGE;
                hid |= ifs[i].cls == USB_CLASS_HID;
                all_allowed &= class_in(ifs[i].cls, allowed, n_allowed);
        }
        if (storage && hid)
                return AGENT_BADUSB; /* a keyboard that is also a disk: refused whole */
        if (storage)
                return AGENT_STORAGE;
        /* No interface, or one the configuration does not list: stays unauthorised (fail closed). */
        return all_allowed ? AGENT_LOCAL_ALLOW : AGENT_REFUSE;
}

int agent_usb_id_normalize(const char *s, char ret[static 5])
{
        if (!s || strlen(s) != 4)
                return -EINVAL;
        for (int i = 0; i < 4; i++) {
                int v = hexval(s[i]);
                if (v < 0)
                        return -EINVAL;
                ret[i] = "0123456789abcdef"[v];
        }
        ret[4] = 0;
        return 0;
}

bool agent_port_valid(const char *s)
{
        /* bus "-" port ("." port)*; numbers of at most 3 digits */
        size_t len = s ? strlen(s) : 0;
        if (len == 0 || len > 64)
                return false;
        const char *p = s;
        bool seen_dash = false;
        for (;;) {
                size_t d = 0;
                while (*p >= '0' && *p <= '9')
                        p++, d++;
                if (d == 0 || d > 3)
                        return false;
                if (*p == 0)
                        return seen_dash;
                if (*p == '-' && !seen_dash)
                        seen_dash = true;
                else if (*p != '.' || !seen_dash)
                        return false;
                p++;
        }
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p)
{
        size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
        for (size_t i = 1; i < n; i++)
                if (!p[i])
                        return 0;
        return n && mamori_utf8_valid(p, n) ? n : 0;
}

int agent_escape(const char *s, char *ret, size_t max)
{
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                size_t n = utf8_len(p);
                char tmp[8];
                const char *out = tmp;
                size_t len;
                if (n == 1 && *p >= 0x20 && *p != 0x7f && *p != '\\') {
                        tmp[0] = *p;
                        len = 1;
                } else if (n == 1 && *p == '\\') {
                        out = "\\\\";
                        len = 2;
                } else if (n > 1) {
                        out = (const char *)p;
                        len = n;
                } else {
                        len = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", *p);
                        n = 1;
                }
                if (o + len >= max)
                        return -E2BIG;
                memcpy(ret + o, out, len);
                o += len;
                p += n;
        }
        ret[o] = 0;
        return 0;
}

int agent_serial_for_decide(const char *raw, char ret[static AGENT_SERIAL_MAX + 1])
{
        return agent_escape(raw ? raw : "", ret, AGENT_SERIAL_MAX + 1);
}

int agent_mount_name(unsigned major, unsigned minor, char ret[static 32])
{
        snprintf(ret, 32, "%u-%u", major, minor);
        return 0;
}

int agent_view_dirname(const char *no, const char *fallback, char ret[static AGENT_VIEW_NAME_MAX])
{
        size_t k = 0;
        for (const unsigned char *p = (const unsigned char *)no; *p && k < AGENT_VIEW_NAME_MAX - 1; p++)
                ret[k++] = (*p == '/' || *p < 0x20 || *p == 0x7f) ? '_' : (char)*p;
        ret[k] = 0;
        /* empty, ".", "..", hidden, or cut (maybe inside a UTF-8 character): the numbers */
        if (!k || ret[0] == '.' || no[k]) {
                snprintf(ret, AGENT_VIEW_NAME_MAX, "%s", fallback);
                return 1;
        }
        return 0;
}

int agent_descriptors_parse(const uint8_t *buf, size_t len, agent_iface *ret, size_t max)
{
        size_t n = 0;
        for (size_t off = 0; off < len;) {
                if (len - off < 2 || buf[off] < 2 || buf[off] > len - off)
                        return -EBADMSG;
                uint8_t dlen = buf[off], type = buf[off + 1];
                if (type == 0x04 && dlen >= 9) { /* interface descriptor */
                        if (n == max)
                                return -E2BIG;
                        ret[n++] = (agent_iface){buf[off + 5], buf[off + 6], buf[off + 7]};
                }
                off += dlen;
        }
        return (int)n;
}

int agent_fs_probe(const uint8_t *buf, size_t len, const char **ret_type, char ret_uuid[static AGENT_FS_UUID_MAX])
{
        if (len >= 1024 + 120 && buf[1024 + 56] == 0x53 && buf[1024 + 57] == 0xef) {
                const uint8_t *u = buf + 1024 + 104;
                snprintf(ret_uuid, AGENT_FS_UUID_MAX,
                         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                         u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
                *ret_type = "ext4";
                return 1;
        }
        if (len >= 512 && buf[510] == 0x55 && buf[511] == 0xaa) {
                const uint8_t *id = NULL;
                if (memcmp(buf + 82, "FAT32   ", 8) == 0)
                        id = buf + 67;
                else if (memcmp(buf + 54, "FAT1", 4) == 0)
                        id = buf + 39;
                if (id) {
                        snprintf(ret_uuid, AGENT_FS_UUID_MAX, "%02X%02X-%02X%02X", id[3], id[2], id[1], id[0]);
                        *ret_type = "vfat";
                        return 1;
                }
        }
        if (len >= 32774 && memcmp(buf + 32769, "CD001", 5) == 0) {
                ret_uuid[0] = 0;
                *ret_type = "iso9660";
                return 1;
        }
        return 0;
}
