/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The agent's evidence (R-EV-1/2 device fields, R-EV-9): one record per connect,
 * verdict, mount, unmount and removal, with the device's identity and port. Records go
 * to policyd at once, or, while it cannot be reached or older records still wait, to
 * the spool, which is delivered in order.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "client.h"
#include "idle.h"
#include "log.h"

#define KV_MAX 40

static int64_t now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool clock_synced(void)
{
        struct timex tx = {0};
        int st = adjtimex(&tx);
        return st >= 0 && st != TIME_ERROR && !(tx.status & STA_UNSYNC);
}

int evidence_frame(const char *type, int64_t time_us, const char *const *kv, uint8_t **ret, size_t *ret_len)
{
        _cleanup_(mamori_msg_freep) mamori_msg *m = NULL;
        int r = mamori_msg_new(MAMORI_MSG_EVIDENCE_SUBMIT, 0, &m);
        if (r < 0)
                return r;
        mamori_msg_put_str(m, MAMORI_F_EV_TYPE, type);
        mamori_msg_put_str(m, MAMORI_F_EV_COMPONENT, "agent");
        mamori_msg_put_i64(m, MAMORI_F_EV_TIME, time_us);
        mamori_msg_put_u8(m, MAMORI_F_EV_SYNCED, clock_synced());
        for (size_t i = 0; kv[i] && kv[i + 1]; i += 2)
                mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, kv[i], kv[i + 1]);
        size_t len;
        const uint8_t *f = mamori_msg_frame(m, &len);
        if (!f)
                return -EMSGSIZE;
        uint8_t *copy = malloc(len);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, f, len);
        *ret = copy;
        *ret_len = len;
        return 0;
}

/* Sends one frame as it is and reads policyd's answer. Returns the status (>= 0) or -errno. */
static int deliver(agent *a, const uint8_t *frame, size_t len)
{
        int fd = policyd_fd(a);
        if (fd < 0)
                return fd;
        for (size_t off = 0; off < len;) {
                ssize_t n = write(fd, frame + off, len - off);
                if (n < 0) {
                        int r = -errno;
                        policyd_drop(a);
                        return r;
                }
                off += n;
        }
        _cleanup_(mamori_msg_freep) mamori_msg *ans = NULL;
        int r = mamori_wire_recv(fd, &ans);
        if (r < 0) {
                policyd_drop(a);
                return r;
        }
        return ans->status;
}

uint64_t evidence_flush(agent *a)
{
        for (;;) {
                _cleanup_free_ uint8_t *f = NULL;
                size_t len;
                int r = agent_spool_peek(a->spool, &f, &len);
                if (r <= 0)
                        break;
                int st = deliver(a, f, len);
                if (st < 0 || st == MAMORI_E_STORAGE || st == MAMORI_E_INTERNAL || st == MAMORI_E_DENIED) {
                        a->policyd_down = true; /* keep it, in order, for the next try */
                        break;
                }
                if (st != MAMORI_OK) /* policyd will never take this one (malformed): say so, move on */
                        log_error("Spooled record refused by policyd (%s); dropping it.", mamori_status_to_string(st));
                if (agent_spool_pop(a->spool) < 0)
                        break;
        }
        uint64_t left = agent_spool_depth(a->spool);
        if (left == 0 && agent_spool_dropped(a->spool) > 0) {
                char n[24];
                snprintf(n, sizeof n, "%" PRIu64, agent_spool_dropped(a->spool));
                const char *kv[] = {"dropped", n, NULL};
                _cleanup_free_ uint8_t *f = NULL;
                size_t len;
                if (evidence_frame("agent.spool_overflow", now_us(), kv, &f, &len) >= 0 &&
                    deliver(a, f, len) == MAMORI_OK)
                        (void)agent_spool_clear_dropped(a->spool);
        }
        if (left == 0)
                a->policyd_down = false;
        agent_write_status(a);
        return left;
}

/* Delivers now if nothing waits before it, else spools. Returns 0 or -errno. */
static int submit(agent *a, const uint8_t *f, size_t len)
{
        if (agent_spool_depth(a->spool) == 0 && !a->policyd_down) {
                int st = deliver(a, f, len);
                if (st == MAMORI_OK)
                        return 0;
                a->policyd_down = true;
        }
        int r = agent_spool_append(a->spool, f, len);
        if (r < 0)
                log_error_errno(r, "Evidence could not be spooled: %m");
        agent_write_status(a);
        return r;
}

/* Frames a record of type with the NULL-terminated key/value list kv, now, and submits it. */
static int submit_kv(agent *a, const char *type, const char *const *kv)
{
        _cleanup_free_ uint8_t *f = NULL;
        size_t len;
        int r = evidence_frame(type, now_us(), kv, &f, &len);
        if (r < 0)
                return log_error_errno(r, "Cannot build the %s record: %m", type);
        return submit(a, f, len);
}

int evidence_device(agent *a, const char *what, const agent_dev *dev, ...)
{
        char type[64];
        snprintf(type, sizeof type, "agent.%s", what);
        const char *kv[KV_MAX + 1];
        size_t n = 0;
        const char *base[] = {"vendor", dev->vendor, "product", dev->product, "serial", dev->serial,
                              "port", dev->port, "device_host", a->host};
        for (size_t i = 0; i < ELEMENTSOF(base); i++)
                kv[n++] = base[i];
        va_list ap;
        va_start(ap, dev);
        for (const char *s; (s = va_arg(ap, const char *)) && n < KV_MAX;)
                kv[n++] = s;
        va_end(ap);
        kv[n] = NULL;
        return submit_kv(a, type, kv);
}

int evidence_event(agent *a, const char *type, ...)
{
        const char *kv[KV_MAX + 1];
        size_t n = 0;
        va_list ap;
        va_start(ap, type);
        for (const char *k; n + 2 < KV_MAX && (k = va_arg(ap, const char *));) {
                kv[n++] = k;
                kv[n++] = va_arg(ap, const char *);
        }
        va_end(ap);
        kv[n++] = "device_host";
        kv[n++] = a->host;
        kv[n] = NULL;
        return submit_kv(a, type, kv);
}

void agent_write_status(agent *a)
{
        /* Readable by everyone: it holds the state and a count, no device strings. */
        if (!a->status_dir || (mkdir(a->status_dir, 0755) < 0 && errno != EEXIST))
                return;
        _cleanup_close_ int dfd = open(a->status_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return;
        _cleanup_close_ int fd = openat(dfd, "status.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return;
        (void)fchmod(fd, 0644); /* the unit's UMask=0077 would make it root's alone */
        dprintf(fd, "state=%s\npolicyd=%s\nspool=%" PRIu64 "\ndropped=%" PRIu64 "\n", a->ready ? "ready" : "starting",
                a->policyd_down ? "unreachable" : "ok", agent_spool_depth(a->spool), agent_spool_dropped(a->spool));
        idle_write_status(a, fd);
        (void)renameat(dfd, "status.tmp", dfd, "status");
}
