/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The evidence database's schema and read side, shared by policyd (which writes it
 * and streams it to verifiers) and by mediactl verify --db (offline copies).
 */
#pragma once

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "cleanup.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3 *, sqlite3_close_v2)
DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize)

#define MAMORI_EVDB_SCHEMA_VERSION 1

/* Opens (read-write: creating the schema) or read-only an evidence database, with
 * WAL and full synchronous commits. Returns 0, or -EIO with a message
 * logged. */
int mamori_evdb_open(const char *path, bool readonly, sqlite3 **ret);

typedef struct mamori_evdb_walker {
        int (*epoch)(void *u, uint32_t epoch, uint64_t first_seq, const uint8_t *pk,
                     const uint8_t *cert);
        int (*record)(void *u, uint64_t seq, const uint8_t *body, size_t len, const uint8_t *hash);
        int (*checkpoint)(void *u, uint64_t seq, uint32_t epoch, const uint8_t *hash,
                          const uint8_t *sig);
        void *userdata;
} mamori_evdb_walker;

/* Calls w->epoch for every epoch, in order. Returns 0, a callback's negative value, or -EIO. */
int mamori_evdb_walk_epochs(sqlite3 *db, const mamori_evdb_walker *w);
/* Calls w->record and w->checkpoint for items with seq > after in sequence order (a
 * checkpoint after the record it seals), stopping after max_records records (0: no
 * limit) and the checkpoint sealing the last. Sets *ret_last to the last seq given
 * and *ret_more to whether items remain. A callback returning > 0 stops the walk.
 * Returns 0, a callback's negative value, or -EIO. */
int mamori_evdb_walk_items(sqlite3 *db, uint64_t after, uint64_t max_records,
                           const mamori_evdb_walker *w, uint64_t *ret_last, bool *ret_more);
/* Verifies a whole database against the anchor. Returns 0 intact, 1 a fault (see
 * *ret), or -EIO when the database cannot be read. */
int mamori_evdb_verify(sqlite3 *db, const uint8_t anchor[MAMORI_PK_LEN], mamori_verify_result *ret);
