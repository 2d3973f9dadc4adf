/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The client side of the policyd protocol, shared by mediactl, the PAM module and the agent. */
#pragma once

#include "wire.h"

/* The socket path: the argument if given, else $MAMORI_SOCKET, else the default. */
const char *mamori_client_socket_path(const char *arg);
/* Connects to policyd. Returns a connected fd (>= 0) or negative errno. */
int mamori_client_connect(const char *path);
/* Sends req and reads one reply. Returns 0 and the reply, or negative errno. */
int mamori_client_call(int fd, mamori_msg *req, mamori_msg **ret);
/* Sends a request of just a type. Returns 0 and the reply, or negative errno. */
int mamori_client_call_simple(int fd, uint16_t type, mamori_msg **ret);
