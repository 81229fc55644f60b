/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by ttrpc-frame.c, ttrpc-client.c and ttrpc-server.c; not
 * for use outside them (the public API is ttrpc.h).
 *
 * A ttrpc_conn is one stream fd with one reader (the client's reader thread
 * or the server's serve loop) and serialized writers. Its wake_fd eventfd
 * becomes readable, and stays so, once the connection is dead; every wait
 * polls it (and extra_wake_fd, the server's shutdown eventfd), so killing a
 * connection releases every thread blocked on it. The fd itself is closed
 * only by ttrpc_conn_close_fd() after writers have left, or on the last
 * unref, never under a thread that might still use it. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/ttrpc.h"

/* Longest peer-supplied status message kept in a cc_error. */
#define TTRPC_PEER_MSG_MAX 512

typedef struct ttrpc_conn {
        int fd;             /* -1 once closed */
        int wake_fd;        /* eventfd, readable once dead */
        int extra_wake_fd;  /* also ends waits when readable (server shutdown), or -1 */
        bool is_socket;     /* sendmsg(MSG_NOSIGNAL) rather than writev */

        pthread_mutex_t mu;
        pthread_cond_t cond; /* writer hand-off and drain */
        bool writing;
        bool dead;
        bool shut;           /* shutdown(2) done */
        unsigned refs;

        /* The reader's buffer: one read(2) usually brings a whole frame,
         * header and payload (each syscall is costly in an emulated guest). */
        size_t rpos, rlen;
        uint8_t rbuf[4096];
} ttrpc_conn;

/* CLOCK_MONOTONIC in ns; deadlines below are in this clock, 0 = none. */
uint64_t ttrpc_now_ns(void);
void ttrpc_cond_init_monotonic(pthread_cond_t *c);
/* Returns ETIMEDOUT once deadline passed, else 0. */
int ttrpc_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline);
/* pthread_create with every signal blocked in the new thread; -errno. */
int ttrpc_thread_start(pthread_t *ret, bool detached, void *(*fn)(void *), void *arg);
/* Bounded copy of a peer string with control characters replaced; NULL on
 * OOM. */
char *ttrpc_peer_string(const char *s);

/* Takes ownership of fd (closed on failure too); O_NONBLOCK|FD_CLOEXEC. */
int ttrpc_conn_new(int fd, int extra_wake_fd, ttrpc_conn **ret, cc_error **ret_err);
void ttrpc_conn_ref(ttrpc_conn *c);
void ttrpc_conn_unref(ttrpc_conn *c);
/* Marks dead, wakes all waiters, shutdown(2)s a socket. Idempotent. */
void ttrpc_conn_kill(ttrpc_conn *c);
bool ttrpc_conn_is_dead(ttrpc_conn *c);
/* Kills, waits for the writer to leave, closes the fd. */
void ttrpc_conn_close_fd(ttrpc_conn *c);
/* Become the only writer: 0, -ETIMEDOUT, or -ENOTCONN if dead. */
int ttrpc_conn_writer_lock(ttrpc_conn *c, uint64_t deadline);
void ttrpc_conn_writer_unlock(ttrpc_conn *c);
/* Writes one frame under the writer lock. -ETIMEDOUT, -ENOTCONN (woken),
 * -errno. A frame cut short kills the connection. */
int ttrpc_conn_write_frame_locked(ttrpc_conn *c, const ttrpc_header *h, const void *payload,
                                  uint64_t deadline);
int ttrpc_conn_write_frame(ttrpc_conn *c, const ttrpc_header *h, const void *payload, uint64_t deadline);
/* Reader only. 0 with *ret_payload malloc'd (NULL if empty); 1 on EOF at a
 * frame boundary; -ENOTCONN when woken (dead or shut down; ret_err not set);
 * other negative errno with ret_err set. */
int ttrpc_conn_read_frame(ttrpc_conn *c, ttrpc_header *ret_h, uint8_t **ret_payload, cc_error **ret_err);
