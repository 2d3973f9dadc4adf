/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The agent's pure decisions, testable without USB (tests/unit/test-agent-logic.c):
 * interface classes, the BadUSB pattern, device identity strings, safe names.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_IFACES_MAX 32      /* interfaces read from one device; more: refused */
#define AGENT_CLASSES_MAX 32     /* configured locally allowed classes */
#define AGENT_SERIAL_MAX 128     /* what policyd accepts (MEDIA_SERIAL_MAX) */
#define AGENT_RECORDED_MAX 1024  /* a device string in evidence, escaped */

#define USB_CLASS_HID 0x03
#define USB_CLASS_STORAGE 0x08
#define USB_CLASS_HUB 0x09

typedef struct agent_iface {
        uint8_t cls, subclass, protocol;
} agent_iface;

/* What the agent does with a USB device, by its interfaces. */
typedef enum agent_class_verdict {
        AGENT_LOCAL_ALLOW, /* only locally allowed classes (keyboard, mouse, hub) */
        AGENT_STORAGE,     /* has a mass-storage interface: ask policyd */
        AGENT_BADUSB,      /* storage together with HID: refused */
        AGENT_REFUSE,      /* some interface is neither storage nor allowed: refused */
        _AGENT_CLASS_VERDICT_MAX,
        _AGENT_CLASS_VERDICT_INVALID = -1,
} agent_class_verdict;

/* Returns the verdict's name ("local-allow", "storage", "badusb", "refuse"). */
const char *agent_class_verdict_to_string(int v);

/* What policyd's verdict (enum mamori_verdict, or -1: no answer) lets the agent do:
 * authorise the USB device (allowed, exempt, audit-only, and identify: let in only to
 * read its filesystem mark), and mount its filesystem (not identify). Anything else,
 * including no answer or an unknown value, does neither (fail closed). */
bool agent_verdict_authorises(int verdict);
bool agent_verdict_mounts(int verdict);
/* The verdict's name in the agent's records: "allowed" (allowed, exempt, audit-only:
 * the reason says which), "identify", or "blocked". */
const char *agent_verdict_recorded(int verdict);

/* The notice for a refused device, for terminals ("\r\n" line ends): the reason in
 * the program's language (gettext, text domain "mamori") and, when that is not
 * English, in English on the next line. Unknown reasons get a generic text (the
 * device is refused all the same). The device strings must be escaped already. */
void agent_refusal_message(const char *reason, const char *vendor, const char *product, const char *serial,
                           const char *port, char *buf, size_t size);

/* Parses udev's ID_USB_INTERFACES (":080650:030101:"). Returns the number of
 * interfaces (>= 1), or -EINVAL for anything not of that form or with more than max. */
int agent_ifaces_parse(const char *s, agent_iface *ret, size_t max);

/* Parses a list of classes "03 09 e0" (two hex digits each, space or comma separated).
 * Returns the count, or -EINVAL. */
int agent_classes_parse(const char *s, uint8_t *ret, size_t max);

/* Decides by interfaces: storage with any HID interface is BadUSB; storage otherwise
 * goes to policyd; a device without storage is allowed only if every interface's class
 * is in allowed; no interface at all refuses (fail closed). */
agent_class_verdict agent_classify(const agent_iface *ifs, size_t n, const uint8_t *allowed, size_t n_allowed);

/* Normalises a USB id attribute ("0781", "0x781"? no: exactly four hex digits) into
 * lower case. Returns 0 or -EINVAL. */
int agent_usb_id_normalize(const char *s, char ret[static 5]);

/* True if s is a kernel USB port name ("1-1.2", "3-2"): bus, dash, dotted ports. */
bool agent_port_valid(const char *s);

/* Escapes a device string for evidence and messages: valid UTF-8 other than control
 * characters and backslash is kept; every other byte becomes \xNN, a backslash \\.
 * Exact and reversible. Returns 0, or -E2BIG if the result would pass max-1 bytes. */
int agent_escape(const char *s, char *ret, size_t max);

/* The serial sent to policyd: the escaped form, which must fit AGENT_SERIAL_MAX.
 * Returns 0 or -E2BIG (the device cannot be registered: blocked, fail closed). */
int agent_serial_for_decide(const char *raw, char ret[static AGENT_SERIAL_MAX + 1]);

/* The mount point's last component for a block device: "<major>-<minor>", numbers
 * only, never a device string. Returns 0. */
int agent_mount_name(unsigned major, unsigned minor, char ret[static 32]);

#define AGENT_VIEW_NAME_MAX 80
/* The media view's directory name under /media/mamori: the management number with '/'
 * and control characters as '_'; fallback ("<major>-<minor>") for an empty, hidden
 * ("." first) or too long one. Returns 0, or 1 when fallback was used. */
int agent_view_dirname(const char *no, const char *fallback, char ret[static AGENT_VIEW_NAME_MAX]);

/* Reads the interface descriptors out of a USB device's raw "descriptors" sysfs file
 * (device descriptor, then configuration descriptors), which the kernel provides even
 * for a device that is not authorised. Returns the number of interfaces (may be 0),
 * or -EBADMSG for a descriptor that runs past the buffer or has a length below 2,
 * -E2BIG for more than max interfaces (refused: fail closed). */
int agent_descriptors_parse(const uint8_t *buf, size_t len, agent_iface *ret, size_t max);

#define AGENT_PROBE_SIZE (64u * 1024u)
#define AGENT_FS_UUID_MAX 40
/* Recognises the filesystem in the first bytes of a block device: "vfat", "ext4"
 * (ext2/3/4) or "iso9660", with its UUID as blkid prints it ("" for iso9660).
 * Returns 1 and the type, 0 for none recognised (the agent does not mount it). */
int agent_fs_probe(const uint8_t *buf, size_t len, const char **ret_type, char ret_uuid[static AGENT_FS_UUID_MAX]);
