/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The policyd wire protocol (docs/protocol.md): length-prefixed frames carrying a
 * message type, a status and typed fields. Every getter is bounded and rejects
 * what does not fit; a frame that does not decode drops the peer.
 *
 * Frame:  u32 body length (big-endian, at most MAMORI_MSG_MAX)
 * Body:   u16 type | u16 status | field*      field: u16 tag | u32 length | bytes
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

#define MAMORI_MSG_MAX (64u * 1024u)  /* body cap, bytes */
#define MAMORI_MSG_FIELDS_MAX 1024u   /* fields per message */
#define MAMORI_STR_MAX 4096u          /* default cap on a string field */

/* Closed set of statuses; never raw errno on the wire. */
typedef enum mamori_status {
        MAMORI_OK = 0,
        MAMORI_MORE = 1,          /* one of several replies; more follow */
        MAMORI_E_MALFORMED = 2,   /* the request did not decode or missed a field */
        MAMORI_E_DENIED = 3,      /* the peer's role may not send this request */
        MAMORI_E_NOT_FOUND = 4,
        MAMORI_E_EXISTS = 5,
        MAMORI_E_INVALID = 6,     /* decoded, but a value is not acceptable */
        MAMORI_E_STORAGE = 7,     /* could not be made durable */
        MAMORI_E_UNSUPPORTED = 8, /* unknown request type */
        MAMORI_E_INTERNAL = 9,
        MAMORI_E_LOCKED = 10,     /* account locked or banned */
        MAMORI_E_BADSIG = 11,     /* signature does not verify or key not trusted */
        _MAMORI_STATUS_MAX,
        _MAMORI_STATUS_INVALID = -1,
} mamori_status;

/* Request types. Ranges: 1-15 core, 16-47 evidence, 48-95 media and grants,
 * 96-127 authentication, 128-159 agent and sessions. */
typedef enum mamori_msg_type {
        MAMORI_MSG_PING = 1,
        MAMORI_MSG_STATUS = 2,
        MAMORI_MSG_EVIDENCE_SUBMIT = 16,
        MAMORI_MSG_EVIDENCE_QUERY = 17,
        MAMORI_MSG_EVIDENCE_EXPORT = 18,
        MAMORI_MSG_EVIDENCE_ANCHOR = 19,
        MAMORI_MSG_EVIDENCE_ROTATE = 20,
        MAMORI_MSG_EVIDENCE_PURGE = 21,
        MAMORI_MSG_EVIDENCE_TRANSFER = 22, /* any user: a file they encrypted or decrypted */
        /* 48-95: media ledger, managers, grants, decisions (policyd/media.c, grants.c) */
        MAMORI_MSG_MEDIA_REGISTER = 48,   /* admin: a new ledger entry */
        MAMORI_MSG_MEDIA_CHANGE = 49,     /* admin: change ledger fields */
        MAMORI_MSG_MEDIA_RETIRE = 50,     /* admin */
        MAMORI_MSG_MEDIA_LIST = 51,       /* readers: one MORE per medium, then OK */
        MAMORI_MSG_MEDIA_DECIDE = 52,     /* agent: verdict for a device (also "seen") */
        MAMORI_MSG_GRANT_CONSUME = 53,    /* agent: a once-only grant was used */
        MAMORI_MSG_MANAGER_TRUST = 54,    /* root: trust a manager's public key */
        MAMORI_MSG_MANAGER_LIST = 55,     /* readers */
        MAMORI_MSG_GRANT_SUBMIT = 56,     /* manager: a signed grant */
        MAMORI_MSG_GRANT_REVOKE = 57,     /* manager: a signed revocation */
        MAMORI_MSG_GRANT_LIST = 58,       /* readers: one MORE per grant, then OK */
        MAMORI_MSG_MANAGER_UNTRUST = 59,  /* root */
        MAMORI_MSG_MEDIA_WATCH = 60,      /* agent: tell me on this connection when decisions may change */
        MAMORI_MSG_MEDIA_CHANGED = 61,    /* policyd to a watcher, unasked: decide your media again */
        MAMORI_MSG_TOKEN_REGISTER = 62,   /* admin: a user's authentication token (R-AUTH-4) */
        MAMORI_MSG_TOKEN_RETIRE = 63,     /* admin */
        MAMORI_MSG_TOKEN_LIST = 64,       /* readers: one MORE per token, then OK */
        MAMORI_MSG_TOKEN_PRESENCE = 65,   /* agent, on its watch connection: a USB device came or went */
        /* 96-127: authentication (policyd/auth.c, pam_mamori, mediactl user) */
        MAMORI_MSG_AUTH_PREAUTH = 96,     /* lock check + reserve one attempt */
        MAMORI_MSG_AUTH_FAIL = 97,        /* the password was wrong */
        MAMORI_MSG_AUTH_SUCCESS = 98,     /* the password was right (+ TOTP code) */
        MAMORI_MSG_AUTH_ACCOUNT = 99,     /* banned/locked? previous login */
        MAMORI_MSG_SESSION_OPEN = 100,
        MAMORI_MSG_SESSION_CLOSE = 101,
        MAMORI_MSG_USER_STATUS = 102,
        MAMORI_MSG_USER_UNLOCK = 103,
        MAMORI_MSG_USER_BAN = 104,
        MAMORI_MSG_USER_UNBAN = 105,
        MAMORI_MSG_TOTP_ENROLL = 106,
        MAMORI_MSG_AUTH_PASSWD = 107,     /* a password was changed */
        _MAMORI_MSG_MAX = 256,
} mamori_msg_type;

/* Field tags. Ranges as for types: 1-63 common, 64-127 evidence, 128-255 media,
 * 256-383 authentication, 384-511 agent. */
typedef enum mamori_tag {
        MAMORI_F_TEXT = 1,        /* str: human-readable detail of a status */
        MAMORI_F_VERSION = 2,     /* str */
        MAMORI_F_UID = 3,         /* u32 */
        MAMORI_F_USER = 4,        /* str */
        MAMORI_F_HOST = 5,        /* str */
        MAMORI_F_COUNT = 6,       /* u64 */
        MAMORI_F_LIMIT = 7,       /* u64 */
        MAMORI_F_ROLE = 8,        /* str, repeated */
        MAMORI_F_EV_TYPE = 64,    /* str: record type, e.g. "media.output" */
        MAMORI_F_EV_TIME = 65,    /* i64: microseconds since the epoch, UTC */
        MAMORI_F_EV_SYNCED = 66,  /* u8: clock synchronised when recorded */
        MAMORI_F_EV_COMPONENT = 67, /* str: "agent", "pam", "mediactl", "policyd" */
        MAMORI_F_EV_PAIR = 68,    /* pair: one record field; repeated */
        MAMORI_F_EV_SEQ = 69,     /* u64 */
        MAMORI_F_EV_BODY = 70,    /* bytes: canonical record */
        MAMORI_F_EV_HASH = 71,    /* bytes[32] */
        MAMORI_F_EV_SINCE = 72,   /* i64 */
        MAMORI_F_EV_UNTIL = 73,   /* i64 */
        MAMORI_F_EV_MEDIA = 74,   /* str: management number filter */
        MAMORI_F_EV_EPOCH = 75,   /* u32 */
        MAMORI_F_EV_PUBKEY = 76,  /* bytes[32] */
        MAMORI_F_EV_CERT = 77,    /* bytes[64] */
        MAMORI_F_EV_SIG = 78,     /* bytes[64] */
        MAMORI_F_EV_FIRST_SEQ = 79, /* u64 */
        MAMORI_F_EV_CHECKPOINT = 80, /* u64: seq of a checkpoint, starts a checkpoint group */
        MAMORI_F_MEDIA_NO = 128,       /* str: management number (管理番号) */
        MAMORI_F_MEDIA_TYPE = 129,     /* str: media type (媒体種別) */
        MAMORI_F_MEDIA_PURPOSE = 130,  /* str */
        MAMORI_F_MEDIA_MANAGER = 131,  /* str: responsible media-use manager */
        MAMORI_F_MEDIA_START = 132,    /* i64: start of use, µs */
        MAMORI_F_MEDIA_END = 133,      /* i64: end of use (exclusive), µs */
        MAMORI_F_MEDIA_REMARKS = 134,  /* str */
        MAMORI_F_MEDIA_USER = 135,     /* str, repeated: "name" or "@group" (R-REG-7) */
        MAMORI_F_MEDIA_STATE = 136,    /* str: "active" or "retired" */
        MAMORI_F_MEDIA_SEEN_TIME = 137, /* i64 */
        MAMORI_F_MEDIA_SEEN_HOST = 138, /* str */
        MAMORI_F_MEDIA_CREATED = 139,  /* i64 */
        MAMORI_F_MEDIA_CHANGED = 140,  /* i64 */
        MAMORI_F_MEDIA_CLEAR_USERS = 141, /* u8: change replaces the user list */
        MAMORI_F_DEV_VENDOR = 144,     /* str: USB idVendor, 4 hex digits */
        MAMORI_F_DEV_PRODUCT = 145,    /* str: USB idProduct, 4 hex digits */
        MAMORI_F_DEV_SERIAL = 146,     /* str: iSerial, "" when the device has none */
        MAMORI_F_DEV_MARK_KIND = 147,  /* str: "none", "fs-uuid", "size", "token" */
        MAMORI_F_DEV_MARK = 148,       /* str */
        MAMORI_F_DEV_FS_UUID = 149,    /* str: decide: what the device shows */
        MAMORI_F_DEV_SIZE = 150,       /* u64: decide: bytes */
        MAMORI_F_DEV_TOKEN = 151,      /* str: decide: registration token read from it */
        MAMORI_F_DEV_PORT = 152,       /* str: USB port path, e.g. "1-1.2" */
        MAMORI_F_DEV_KIND = 153,       /* str: "storage" or "optical" */
        MAMORI_F_GRANT = 160,          /* bytes: a signed grant (common/grant.h) */
        MAMORI_F_GRANT_ID = 161,       /* bytes[16] */
        MAMORI_F_REVOCATION = 162,     /* bytes: a signed revocation */
        MAMORI_F_GRANT_STATE = 163,    /* str: "active", "revoked", "used", "expired" */
        MAMORI_F_MGR_PUBKEY = 164,     /* bytes[32] */
        MAMORI_F_MGR_NAME = 165,       /* str */
        MAMORI_F_VERDICT = 166,        /* u8: enum mamori_verdict (policyd/media.h) */
        MAMORI_F_REASON = 167,         /* str: why blocked, e.g. "unregistered" */
        MAMORI_F_ENTRY = 168,          /* bytes, repeated: u8 kind | u8 modes | u8 once |
                                        * i64 until | id[16] | subject (rest) */
        MAMORI_F_NEXT_CHANGE = 169,    /* i64: when the answer next changes, µs */
        MAMORI_F_MODE = 170,           /* u8: mode bits asked about */
        MAMORI_F_PERMIT = 171,         /* u8: 1 if F_USER may use F_MODE now */
        MAMORI_F_TOKEN_PRESENT = 172,  /* u8: the device is plugged in (1) or was pulled (0) */
        MAMORI_F_AUTH_SERVICE = 256, /* str: PAM service */
        MAMORI_F_AUTH_RHOST = 257,   /* str: remote host, "" for local */
        MAMORI_F_AUTH_TTY = 258,     /* str */
        MAMORI_F_AUTH_CODE = 259,    /* str: a TOTP code (6-8 digits) */
        MAMORI_F_AUTH_UNTIL = 260,   /* i64: locked until, µs since the epoch */
        MAMORI_F_AUTH_BANNED = 261,  /* u8 */
        MAMORI_F_AUTH_NEED_TOTP = 262, /* u8: the second factor is required */
        MAMORI_F_AUTH_LAST_TIME = 263, /* i64: previous login, µs */
        MAMORI_F_AUTH_LAST_HOST = 264, /* str */
        MAMORI_F_AUTH_LAST_SERVICE = 265, /* str */
        MAMORI_F_AUTH_LAST_TTY = 266, /* str */
        MAMORI_F_AUTH_URI = 267,     /* str: otpauth:// URI, in the enroll reply only */
        MAMORI_F_AUTH_SESSION = 268, /* u64: session id */
        MAMORI_F_AUTH_REASON = 269,  /* str */
        MAMORI_F_AUTH_PID = 270,     /* u32 */
        MAMORI_F_AUTH_TOTP = 271,    /* u8: a TOTP secret is enrolled */
        MAMORI_F_AUTH_TOKEN_ABSENT = 273, /* u8: refused because the user's token is not plugged in */
        MAMORI_F_AUTH_SOURCE = 272,  /* bytes, repeated: u64 failures | i64 last, µs | source
                                      * (rest: remote host, else tty, else "local") */
} mamori_tag;

typedef struct mamori_field {
        uint16_t tag;
        uint32_t len;
        const uint8_t *data; /* NUL-terminated copy inside the message */
} mamori_field;

typedef struct mamori_msg {
        uint16_t type;
        uint16_t status;
        size_t n_fields;
        mamori_field *fields;
        uint8_t *buf; /* frame being built, or decoded body copy */
        size_t size, alloc;
        bool oversize; /* a put did not fit: mamori_msg_frame() fails */
} mamori_msg;

/* Returns the status's name ("ok", "denied", ...), or "unknown-status". */
const char *mamori_status_to_string(int status);
/* Returns the request type's name, or NULL for an unknown type. */
const char *mamori_msg_type_to_string(int type);

/* Allocates a message to build. Returns 0 or -ENOMEM. */
int mamori_msg_new(uint16_t type, uint16_t status, mamori_msg **ret);
void mamori_msg_free(mamori_msg *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(mamori_msg *, mamori_msg_free)
/* Append fields. They never fail on their own: an oversize message is reported by
 * mamori_msg_frame(). Strings are copied without their NUL. */
void mamori_msg_put_bytes(mamori_msg *m, uint16_t tag, const void *p, size_t len);
void mamori_msg_put_str(mamori_msg *m, uint16_t tag, const char *s);
void mamori_msg_put_u8(mamori_msg *m, uint16_t tag, uint8_t v);
void mamori_msg_put_u32(mamori_msg *m, uint16_t tag, uint32_t v);
void mamori_msg_put_u64(mamori_msg *m, uint16_t tag, uint64_t v);
void mamori_msg_put_i64(mamori_msg *m, uint16_t tag, int64_t v);
/* A (key, value) pair: key 1..64 chars of [a-z0-9_.], value a string. */
void mamori_msg_put_pair(mamori_msg *m, uint16_t tag, const char *key, const char *value);
/* Bytes appended so far, for callers that split long answers into several messages. */
size_t mamori_msg_size(const mamori_msg *m);
/* Finishes the frame: returns a pointer to the bytes to send and sets *ret_len.
 * Returns NULL when the message grew past MAMORI_MSG_MAX (or ran out of memory). */
const uint8_t *mamori_msg_frame(mamori_msg *m, size_t *ret_len);

/* Decodes one body (without the length prefix). Returns 0 and a new message, or
 * -EBADMSG when the body is malformed, -EMSGSIZE when too long, -ENOMEM. */
int mamori_msg_decode(const uint8_t *body, size_t len, mamori_msg **ret);

/* Typed getters: return 0 and set *ret, -ENOENT if the field is absent, -EBADMSG if it
 * is present but not of the form (wrong length, NUL or invalid UTF-8 in a string,
 * longer than max). With several fields of the tag, the first is used. */
int mamori_msg_get_str(const mamori_msg *m, uint16_t tag, size_t max, const char **ret);
int mamori_msg_get_bytes(const mamori_msg *m, uint16_t tag, size_t len, const uint8_t **ret);
int mamori_msg_get_u8(const mamori_msg *m, uint16_t tag, uint8_t *ret);
int mamori_msg_get_u32(const mamori_msg *m, uint16_t tag, uint32_t *ret);
int mamori_msg_get_u64(const mamori_msg *m, uint16_t tag, uint64_t *ret);
int mamori_msg_get_i64(const mamori_msg *m, uint16_t tag, int64_t *ret);
/* Checks a field as a string (bounded, no NUL, valid UTF-8). Returns 0 or -EBADMSG. */
int mamori_field_str(const mamori_field *f, size_t max, const char **ret);
#define MAMORI_PAIR_KEY_MAX 64
/* Decodes a pair field: copies the key into ret_key and points *ret_value at the
 * value inside the message. Returns 0, or -EBADMSG. */
int mamori_field_pair(const mamori_field *f, char ret_key[static MAMORI_PAIR_KEY_MAX + 1],
                      const char **ret_value);
/* Decodes a fixed-width big-endian integer field (len 1, 4 or 8). Returns 0 or -EBADMSG. */
int mamori_field_uint(const mamori_field *f, size_t width, uint64_t *ret);

/* True if s is valid UTF-8 of len bytes, without NUL. */
bool mamori_utf8_valid(const uint8_t *s, size_t len);
/* True if key is a valid pair key. */
bool mamori_pair_key_valid(const char *key);

/* Incremental frame reader for nonblocking sockets. */
typedef struct mamori_reader {
        uint8_t *buf;
        size_t off, len, alloc; /* unread bytes are buf[off..len) */
} mamori_reader;
/* Reads what the socket has. Returns bytes read (> 0), 0 at EOF, -EAGAIN, or -errno. */
int mamori_reader_fill(mamori_reader *r, int fd);
/* Takes one whole message off the buffer. Returns 1 and a message, 0 when more bytes
 * are needed, -EMSGSIZE for a frame over the cap, -EBADMSG for one that does not decode. */
int mamori_reader_next(mamori_reader *r, mamori_msg **ret);
void mamori_reader_done(mamori_reader *r);
/* Bytes received and not yet taken off as messages. */
size_t mamori_reader_pending(const mamori_reader *r);

/* Blocking helpers for clients: write a whole frame; read one whole message. */
int mamori_wire_send(int fd, mamori_msg *m);
/* Returns 0 and a message, -ECONNRESET at EOF, or another -errno. */
int mamori_wire_recv(int fd, mamori_msg **ret);
