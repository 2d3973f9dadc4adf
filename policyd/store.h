/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * policyd's evidence store: appends records to the hash chain inside a batch
 * transaction (group commit: many records, one fsync), seals checkpoints with the
 * current epoch key, rotates epoch keys, and purges expired epochs (R-EV-7, R-EV-11).
 */
#pragma once

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "record.h"

typedef struct store store;

/* Opens or creates the store in state_dir (evidence.db, epoch.key, anchor.pub).
 * Returns 0, or a negative errno with the reason logged. */
int store_open(const char *state_dir, const mamori_config *cfg, store **ret);
void store_free(store *s);

/* Takes ownership of rec: fills in host and machine id, assigns the next seq, hashes
 * and inserts it inside the open batch (type, component, uid and time are the
 * caller's). The record is copied to the journal once the batch commits.
 * Returns 0 and the seq, -EINVAL for a record that cannot be encoded, -EIO. */
int store_append(store *s, mamori_record *rec, uint64_t *ret_seq);
/* Opens the batch if it is not open, so a module's own writes (its tables live in
 * the same database) commit atomically with the evidence records that describe
 * them. Returns 0 or -EIO. */
int store_begin(store *s);
/* The read-write connection, for modules' writes inside the batch. */
sqlite3 *store_writer(const store *s);
/* True if a batch is open (records appended but not committed). */
bool store_dirty(const store *s);
/* Commits the batch (sealing a checkpoint when one is due). Returns 0 or -EIO (the
 * batch is then rolled back and the chain state restored). */
int store_commit(store *s);
/* Seals the unsealed records now, if any. Returns 0 or -EIO. */
int store_seal(store *s);
/* Starts a new epoch: seals, makes a new key certified by the old one, erases the
 * old secret. Returns 0 or negative errno. */
int store_rotate(store *s);
/* Time (CLOCK_MONOTONIC, µs) at which the next timed seal or rotation is due. */
int64_t store_next_deadline(const store *s);
/* Runs timed seals and rotations that are due. Returns 0 or negative errno. */
int store_tick(store *s);
/* Purges whole epochs whose records are all past retention, leaving the sealing
 * checkpoint and appending an evidence.purge record. Returns the number of records
 * purged (>= 0) or negative errno. */
int64_t store_purge(store *s, int64_t now_us);

const uint8_t *store_anchor(const store *s);
uint64_t store_last_seq(const store *s);
uint32_t store_epoch(const store *s);
/* A read-only connection that sees committed data only (for queries and exports). */
sqlite3 *store_reader(const store *s);
const char *store_host(const store *s);
const char *store_path(const store *s);
const char *store_machine_id(const store *s);
