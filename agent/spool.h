/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The agent's evidence spool (R-EV-9): while policyd cannot be reached, evidence frames
 * are appended to one root-only file and delivered in order when it returns.
 *
 * File "spool" in the spool directory (0700, owned by the agent's uid), mode 0600:
 *   header:  "MAMSPL1\n" | u64 head | u64 dropped      (big-endian, 24 bytes)
 *   records: one policyd wire frame each (u32 length | body), appended at the end
 * head is the offset of the first record not yet delivered; when every record is
 * delivered the file is cut back to its header. dropped counts records refused because
 * the spool was full. A torn last record (a crash while appending) is cut off at open.
 * Delivery is at least once: a crash between policyd's answer and the head update
 * sends that one record again.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define AGENT_SPOOL_HEADER 24u
#define AGENT_SPOOL_MAX_DEFAULT (8u * 1024u * 1024u)

typedef struct agent_spool agent_spool;

/* Opens (creating) the spool in dir, which is created 0700 if missing. The directory
 * and file must belong to our euid and give nothing to group or others, else -EPERM.
 * max is the file's size cap in bytes. Returns 0, or -errno, -EBADMSG for a bad header. */
int agent_spool_open(const char *dir, uint64_t max, agent_spool **ret);
void agent_spool_free(agent_spool *s);

/* Appends one frame durably. Returns 0, -ENOSPC when it would pass the cap (the record
 * is counted as dropped), -EINVAL for a frame that is not one, or -errno. */
int agent_spool_append(agent_spool *s, const uint8_t *frame, size_t len);

/* The first undelivered frame: 1 and a malloc'd copy, 0 when empty, or -errno. */
int agent_spool_peek(agent_spool *s, uint8_t **ret, size_t *ret_len);
/* Marks the first frame delivered (durably). Returns 0 or -errno. */
int agent_spool_pop(agent_spool *s);

/* Records waiting, and records dropped since the counter was last taken. */
uint64_t agent_spool_depth(const agent_spool *s);
uint64_t agent_spool_dropped(const agent_spool *s);
/* Resets the dropped counter durably (after its own record was spooled). Returns 0 or -errno. */
int agent_spool_clear_dropped(agent_spool *s);
