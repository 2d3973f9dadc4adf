/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Hearing of changes: a second connection to policyd on which the agent asked
 * MEDIA_WATCH. After every commit that changed the ledger, the grants or the trusted
 * keys, policyd sends MEDIA_CHANGED on it, and the agent decides every storage device
 * again at once: a revoked grant or a retired medium is unmounted and deauthorised
 * then, not at the next replug.
 *
 * While the connection is down (policyd restarting), changes are not heard: the retry
 * timer reconnects, and after a reconnection the agent decides everything again, so
 * nothing missed in between stays allowed. Between the change and the reconnection
 * the old answers stand (the same as a change made while policyd is away).
 *
 * Authentication tokens (R-AUTH-4) are reported on the same connection: every USB
 * device with a serial that comes or goes (token-presence). policyd ties what it hears
 * to this connection and forgets it when the connection closes, so after a
 * reconnection the agent reports every device again. When policyd answers that a
 * device that went was a user's token, that user's sessions are locked at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "client.h"
#include "idle.h"
#include "log.h"

static void watch_drop(agent *a)
{
        a->watch = sd_event_source_disable_unref(a->watch);
        mamori_reader_done(&a->watch_rd);
        a->watch_rd = (mamori_reader){0};
        if (a->watch_fd >= 0)
                close(a->watch_fd);
        a->watch_fd = -1;
        a->watch_missed = true; /* changes may come unheard until the next connection */
}

void agent_decide_storage_again(agent *a)
{
        for (size_t i = 0; i < AGENT_DEVICES_MAX; i++)
                if (a->devs[i].used && a->devs[i].cls == AGENT_STORAGE && a->devs[i].serial_ok)
                        decide_again(a, &a->devs[i]);
        for (size_t i = 0; i < AGENT_DEVICES_MAX; i++)
                view_reload(&a->devs[i]); /* the media views ask policyd for their rights again too */
}

/* policyd's answer about a device that came or went: a token. Pulled: lock its user's
 * sessions now (R-AUTH-4). */
static void token_answer(agent *a, const mamori_msg *m)
{
        const char *user, *no = "";
        uint8_t here;
        if (mamori_msg_get_str(m, MAMORI_F_USER, 32, &user) < 0 || mamori_msg_get_u8(m, MAMORI_F_TOKEN_PRESENT, &here) < 0)
                return;
        (void)mamori_msg_get_str(m, MAMORI_F_MEDIA_NO, 64, &no);
        if (here) {
                log_info("Token %s of user %s plugged in.", no, user);
                return;
        }
        log_notice("Token %s of user %s pulled out: locking the user's sessions.", no, user);
        int r = idle_lock_user(a, user, "token-removed");
        if (r < 0)
                log_error_errno(r, "Cannot lock the sessions of %s: %m", user);
}

void watch_presence(agent *a, const agent_dev *dev, bool present)
{
        if (a->watch_fd < 0 || !dev->serial_ok || !dev->serial[0])
                return; /* not connected: everything is reported again on connecting */
        _cleanup_(mamori_msg_freep) mamori_msg *m = NULL;
        if (mamori_msg_new(MAMORI_MSG_TOKEN_PRESENCE, 0, &m) < 0)
                return;
        mamori_msg_put_str(m, MAMORI_F_DEV_VENDOR, dev->vendor);
        mamori_msg_put_str(m, MAMORI_F_DEV_PRODUCT, dev->product);
        mamori_msg_put_str(m, MAMORI_F_DEV_SERIAL, dev->serial);
        mamori_msg_put_str(m, MAMORI_F_DEV_PORT, dev->port);
        mamori_msg_put_u8(m, MAMORI_F_TOKEN_PRESENT, present);
        int r = mamori_wire_send(a->watch_fd, m);
        if (r < 0) { /* reconnect: policyd forgets this connection's reports, we send them all again */
                log_warning_errno(r, "Cannot report a device to policyd (%m); reconnecting.");
                watch_drop(a);
        }
}

static void report_all(agent *a)
{
        for (size_t i = 0; i < AGENT_DEVICES_MAX && a->watch_fd >= 0; i++)
                if (a->devs[i].used)
                        watch_presence(a, &a->devs[i], true);
}

static int on_watch(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        agent *a = userdata;
        bool changed = false;
        for (;;) {
                int r = mamori_reader_fill(&a->watch_rd, fd);
                if (r == -EAGAIN)
                        break;
                if (r <= 0) { /* policyd went away: reconnect from the retry timer */
                        log_info("policyd closed the watch connection; reconnecting.");
                        watch_drop(a);
                        return 0;
                }
        }
        for (;;) {
                _cleanup_(mamori_msg_freep) mamori_msg *m = NULL;
                int r = mamori_reader_next(&a->watch_rd, &m);
                if (r == 0)
                        break;
                if (r < 0) {
                        log_warning("Malformed message on the watch connection; reconnecting.");
                        watch_drop(a);
                        return 0;
                }
                if (m->type == MAMORI_MSG_MEDIA_CHANGED)
                        changed = true;
                else if (m->type == MAMORI_MSG_TOKEN_PRESENCE && m->status == MAMORI_OK)
                        token_answer(a, m);
        }
        if (changed) {
                log_info("policyd reports a change of the ledger or the grants: deciding every storage device again.");
                agent_decide_storage_again(a);
        }
        return 0;
}

int watch_connect(agent *a)
{
        if (a->watch)
                return 0;
        _cleanup_close_ int fd = mamori_client_connect(a->socket_path);
        if (fd < 0)
                return fd;
        struct timeval tv = {.tv_sec = 5};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        _cleanup_(mamori_msg_freep) mamori_msg *ans = NULL;
        int r = mamori_client_call_simple(fd, MAMORI_MSG_MEDIA_WATCH, &ans);
        if (r < 0)
                return r;
        if (ans->status != MAMORI_OK)
                return log_warning_errno(EPERM, "policyd refused to report changes: %s",
                                         mamori_status_to_string(ans->status));
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
                return -errno;
        r = sd_event_add_io(a->event, &a->watch, fd, EPOLLIN, on_watch, a);
        if (r < 0)
                return r;
        a->watch_fd = TAKE_FD(fd);
        report_all(a); /* policyd knows nothing of this connection's devices yet */
        if (a->watch_missed) { /* changes made while unheard: decide again now */
                a->watch_missed = false;
                agent_decide_storage_again(a);
        }
        return 0;
}

void watch_close(agent *a)
{
        watch_drop(a);
}
