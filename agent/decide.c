/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * policyd's verdict for a storage device (MEDIA_DECIDE), and acting when the answer
 * changes: at the decision's next change time the agent asks again and unmounts,
 * deauthorises or remounts read-only as the new answer says.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "client.h"
#include "grant.h"
#include "log.h"

#define POLICYD_TIMEOUT_S 5
#define IDENTIFY_US (30 * 1000 * 1000ULL) /* to show a filesystem once let in to be identified */

void policyd_drop(agent *a)
{
        if (a->policyd_fd >= 0)
                close(a->policyd_fd);
        a->policyd_fd = -1;
}

int policyd_fd(agent *a)
{
        if (a->policyd_fd >= 0)
                return a->policyd_fd;
        int fd = mamori_client_connect(a->socket_path);
        if (fd < 0)
                return fd;
        struct timeval tv = {.tv_sec = POLICYD_TIMEOUT_S};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        a->policyd_fd = fd;
        return fd;
}

/* Reads the answer into dev. Returns 0 or -EBADMSG. */
static int read_answer(const mamori_msg *m, agent_dev *dev)
{
        uint8_t v;
        const char *reason = "", *no = "";
        int64_t next = INT64_MAX;
        if (mamori_msg_get_u8(m, MAMORI_F_VERDICT, &v) < 0 || v >= _MAMORI_VERDICT_MAX)
                return -EBADMSG;
        (void)mamori_msg_get_str(m, MAMORI_F_REASON, 63, &reason);
        (void)mamori_msg_get_str(m, MAMORI_F_MEDIA_NO, 63, &no);
        if (mamori_msg_get_i64(m, MAMORI_F_NEXT_CHANGE, &next) == -EBADMSG)
                return -EBADMSG;
        bool write = false;
        for (size_t i = 0; i < m->n_fields; i++) {
                mamori_entry e;
                if (m->fields[i].tag == MAMORI_F_ENTRY &&
                    mamori_entry_decode(m->fields[i].data, m->fields[i].len, &e) >= 0)
                        write |= (e.modes & ~MAMORI_MODE_READ) != 0;
        }
        dev->verdict = v;
        snprintf(dev->reason, sizeof dev->reason, "%s", reason);
        snprintf(dev->no, sizeof dev->no, "%s", no);
        dev->next_change = next;
        /* A disc is never mounted writable: writing one is burning, not a mount. */
        dev->may_write = agent_verdict_mounts(v) && write && !dev->optical;
        return 0;
}

int decide_device(agent *a, agent_dev *dev)
{
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *ans = NULL;
        int r = mamori_msg_new(MAMORI_MSG_MEDIA_DECIDE, 0, &req);
        if (r < 0)
                return r;
        mamori_msg_put_str(req, MAMORI_F_DEV_VENDOR, dev->vendor);
        mamori_msg_put_str(req, MAMORI_F_DEV_PRODUCT, dev->product);
        mamori_msg_put_str(req, MAMORI_F_DEV_SERIAL, dev->serial);
        mamori_msg_put_str(req, MAMORI_F_DEV_PORT, dev->port);
        mamori_msg_put_str(req, MAMORI_F_HOST, a->host);
        mamori_msg_put_str(req, MAMORI_F_DEV_KIND, dev->optical ? "optical" : "storage");
        if (dev->block) {
                mamori_msg_put_u64(req, MAMORI_F_DEV_SIZE, dev->block_size);
                if (dev->block_uuid[0])
                        mamori_msg_put_str(req, MAMORI_F_DEV_FS_UUID, dev->block_uuid);
        }
        int fd = policyd_fd(a);
        if (fd < 0)
                return fd;
        r = mamori_client_call(fd, req, &ans);
        if (r < 0) {
                policyd_drop(a);
                return r;
        }
        if (ans->status != MAMORI_OK) /* e.g. storage failure: no verdict, stays blocked */
                return log_warning_errno(EIO, "policyd refused the decision: %s",
                                         mamori_status_to_string(ans->status));
        r = read_answer(ans, dev);
        if (r < 0)
                policyd_drop(a);
        return r;
}

static int64_t realtime_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Unmounts dev's filesystem and deauthorises it. A device that cannot be deauthorised
 * is logged and still counted as authorised (the next decision tries again). */
static void shut_out(agent *a, agent_dev *dev)
{
        if (dev->mounted)
                (void)mount_release(a, dev);
        if (dev->authorized) {
                int k = usb_set_authorized(dev->syspath, false);
                if (k < 0)
                        log_error_errno(k, "Cannot deauthorise port %s: %m", dev->port);
                dev->authorized = k < 0;
        }
}

void decide_again(agent *a, agent_dev *dev)
{
        int was = dev->verdict;
        bool was_write = dev->may_write;
        int r = decide_device(a, dev);
        if (r < 0) { /* no answer: what was allowed is taken away until policyd answers (fail closed) */
                dev->verdict = -1;
                dev->may_write = false;
                snprintf(dev->reason, sizeof dev->reason, "policyd-unreachable");
        }
        bool allow = agent_verdict_authorises(dev->verdict);
        if (was != dev->verdict || was_write != dev->may_write)
                (void)evidence_device(a, "verdict", dev, "verdict", agent_verdict_recorded(dev->verdict), "reason",
                                      dev->reason, "media", dev->no, "changed", "1", NULL);
        if (!allow || (dev->mounted && !agent_verdict_mounts(dev->verdict))) {
                shut_out(a, dev);
        } else if (!dev->authorized) { /* allowed now: let it in; its block device is mounted on arrival */
                int k = usb_set_authorized(dev->syspath, true);
                if (k < 0)
                        log_error_errno(k, "Cannot authorise port %s: %m", dev->port);
                dev->authorized = k >= 0;
        } else if (dev->mounted && dev->mounted_rw != dev->may_write)
                (void)mount_update(a, dev);
        decide_arm_timer(a, dev);
}

void decide_refuse(agent *a, agent_dev *dev, const char *reason)
{
        dev->verdict = MAMORI_VERDICT_BLOCKED;
        dev->may_write = false;
        snprintf(dev->reason, sizeof dev->reason, "%s", reason);
        (void)evidence_device(a, "verdict", dev, "verdict", "blocked", "reason", dev->reason, "media", dev->no,
                              "changed", "1", NULL);
        shut_out(a, dev);
        dev->timer = sd_event_source_disable_unref(dev->timer);
        notify_refused(a, dev);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        agent_dev *dev = userdata;
        if (dev->verdict == MAMORI_VERDICT_IDENTIFY) /* let in to show its mark, and it showed none */
                decide_refuse(dev->agent, dev, "no-mark-found");
        else
                decide_again(dev->agent, dev);
        return 0;
}

void decide_arm_timer(agent *a, agent_dev *dev)
{
        dev->timer = sd_event_source_disable_unref(dev->timer);
        if (dev->verdict == MAMORI_VERDICT_IDENTIFY) {
                /* Let in only to read its mark: a device that shows no filesystem within
                 * IDENTIFY_US is refused (fail closed); if the timer cannot be armed, now. */
                if (sd_event_add_time_relative(a->event, &dev->timer, CLOCK_MONOTONIC, IDENTIFY_US, 100 * 1000,
                                               on_timer, dev) < 0)
                        decide_refuse(a, dev, "no-mark-found");
                return;
        }
        if (dev->next_change == INT64_MAX || dev->verdict < 0)
                return;
        /* CLOCK_REALTIME: the change time is wall-clock; a set clock moves it with it. */
        int64_t at = dev->next_change < realtime_us() ? realtime_us() : dev->next_change;
        int r = sd_event_add_time(a->event, &dev->timer, CLOCK_REALTIME, (uint64_t)at, 100 * 1000, on_timer, dev);
        if (r < 0 && dev->authorized) { /* nobody would take the rights away at their end: deny now */
                log_error_errno(r, "Cannot arm the change timer for port %s: %m; deauthorising.", dev->port);
                shut_out(a, dev);
        }
}
