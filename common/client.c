/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "cleanup.h"
#include "mamori-config.h"

const char *mamori_client_socket_path(const char *arg)
{
        if (arg)
                return arg;
        const char *e = secure_getenv("MAMORI_SOCKET");
        return e && *e ? e : MAMORI_SOCKET_PATH;
}

int mamori_client_connect(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int mamori_client_call(int fd, mamori_msg *req, mamori_msg **ret)
{
        int r = mamori_wire_send(fd, req);
        if (r < 0)
                return r;
        return mamori_wire_recv(fd, ret);
}

int mamori_client_call_simple(int fd, uint16_t type, mamori_msg **ret)
{
        mamori_msg *m;
        int r = mamori_msg_new(type, 0, &m);
        if (r < 0)
                return r;
        r = mamori_client_call(fd, m, ret);
        mamori_msg_free(m);
        return r;
}
