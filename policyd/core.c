/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Requests every local user may send: ping and status. */
#include <errno.h>

#include "handlers.h"
#include "mamori-config.h"

static int handle_ping(server *srv, conn *c, const mamori_msg *req)
{
        return conn_reply(c, req->type, MAMORI_OK, "pong");
}

/* Reports the daemon's version, the evidence head and epoch, and the caller's roles. */
static int handle_status(server *srv, conn *c, const mamori_msg *req)
{
        static const struct {
                unsigned bit;
                const char *name;
        } roles[] = {
                {ROLE_ROOT, "root"},       {ROLE_AGENT, "agent"},     {ROLE_ADMIN, "admin"},
                {ROLE_MANAGER, "manager"}, {ROLE_AUDITOR, "auditor"}, {ROLE_USER, "user"},
        };
        mamori_msg *m;
        int r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        store *st = server_store(srv);
        mamori_msg_put_str(m, MAMORI_F_VERSION, MAMORI_VERSION);
        mamori_msg_put_str(m, MAMORI_F_HOST, store_host(st));
        mamori_msg_put_u64(m, MAMORI_F_EV_SEQ, store_last_seq(st));
        mamori_msg_put_u32(m, MAMORI_F_EV_EPOCH, store_epoch(st));
        mamori_msg_put_u32(m, MAMORI_F_UID, conn_uid(c));
        for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
                if (conn_roles(c) & roles[i].bit)
                        mamori_msg_put_str(m, MAMORI_F_ROLE, roles[i].name);
        r = conn_send(c, m);
        mamori_msg_free(m);
        return r;
}

const handler core_handlers[] = {
        {MAMORI_MSG_PING, ROLE_USER, handle_ping},
        {MAMORI_MSG_STATUS, ROLE_USER, handle_status},
        {0},
};
