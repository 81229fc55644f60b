/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's unix socket: directory, single-instance lock, stale sockets,
 * permissions. */
#pragma once

#include <sys/types.h>

#include "common/error.h"

typedef struct cri_socket {
        char *path;   /* filesystem path of the socket */
        int lock_fd;  /* flock on "<path>.lock", held while we serve */
} cri_socket;

/* From "unix:///run/x.sock" or "unix:/run/x.sock": the path (malloc'd).
 * Other schemes → -EINVAL. */
int cri_socket_path_from_address(const char *address, char **ret_path, cc_error **ret_err);
/* Creates the directory, takes the instance lock, and makes sure nothing
 * serves on path: a live server → -EADDRINUSE; a stale socket → removed; a
 * non-socket file → -EEXIST (never deleted). */
int cri_socket_prepare(const char *address, cri_socket *ret, cc_error **ret_err);
/* After the server bound it: mode and group. */
int cri_socket_set_perms(const cri_socket *s, mode_t mode, const char *group, cc_error **ret_err);
/* Removes the socket file and releases the lock. */
void cri_socket_release(cri_socket *s);
