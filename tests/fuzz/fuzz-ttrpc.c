/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the ttRPC code that reads bytes from the other side:
 * header decoding and envelope unpacking, the server's serve loop (the host
 * as seen by the agent) and the client's reader (the UNTRUSTED guest as seen
 * by cocoond). The input is the byte stream the peer sends.
 *
 * Not wired into automake (no fragment for tests/fuzz yet). Build and run,
 * from the source tree, with BUILD a configured build directory in which
 * `make proto/libagentproto.a` has generated proto/ttrpc.pb-c.[ch]
 * (Debian: clang, libclang-rt-14-dev):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -pthread \
 *     -D_GNU_SOURCE -Ulinux \
 *     -I. -I$BUILD/proto \
 *     tests/fuzz/fuzz-ttrpc.c common/ttrpc-frame.c common/ttrpc-client.c \
 *     common/ttrpc-server.c common/error.c common/log.c \
 *     $BUILD/proto/ttrpc.pb-c.c -lprotobuf-c -o /tmp/fuzz-ttrpc
 *   mkdir -p /tmp/fuzz-ttrpc-corpus
 *   /tmp/fuzz-ttrpc -max_len=65536 -max_total_time=60 /tmp/fuzz-ttrpc-corpus
 *
 * Every run of the target is deterministic: the client call has no timeout
 * and ends on a response or on EOF, the serve loop ends on EOF. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ttrpc.h"
#include "ttrpc.pb-c.h"

typedef struct peer {
        int fd;
        const uint8_t *data;
        size_t size;
        pthread_t t;
} peer;

/* Sends the input, half-closes, and drains whatever comes back until EOF. */
static void *peer_main(void *arg)
{
        peer *p = arg;
        size_t off = 0;
        uint8_t sink[4096];

        while (off < p->size) {
                ssize_t n = send(p->fd, p->data + off, p->size - off, MSG_NOSIGNAL);
                if (n <= 0)
                        break;
                off += (size_t)n;
        }
        shutdown(p->fd, SHUT_WR);
        while (read(p->fd, sink, sizeof(sink)) > 0)
                ;
        close(p->fd);
        return NULL;
}

static int peer_start(peer *p, const uint8_t *data, size_t size, int *ret_local)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        *p = (peer){ .fd = sv[1], .data = data, .size = size };
        *ret_local = sv[0];
        if (pthread_create(&p->t, NULL, peer_main, p) != 0)
                abort();
        return 0;
}

static ttrpc_call *parked;

static void h_echo(ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        ttrpc_call_reply(call, payload, len);
}

static void h_fail(ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        ttrpc_call_reply_status(call, TTRPC_CODE_NOT_FOUND, "no %zu", len);
}

/* Deferred: answered after the serve loop returned (-ENOTCONN path). */
static void h_defer(ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        if (parked)
                ttrpc_call_reply(parked, payload, len);
        parked = call;
}

static ttrpc_server *server;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        signal(SIGPIPE, SIG_IGN);
        server = ttrpc_server_new(NULL);
        if (!server)
                abort();
        ttrpc_server_register(server, "s", "Echo", h_echo, NULL, NULL);
        ttrpc_server_register(server, "s", "Fail", h_fail, NULL, NULL);
        ttrpc_server_register(server, "s", "Defer", h_defer, NULL, NULL);
        return 0;
}

static void fuzz_frames(const uint8_t *data, size_t size)
{
        while (size >= TTRPC_HEADER_SIZE) {
                ttrpc_header h;
                if (ttrpc_header_decode(data, &h, NULL) < 0)
                        return;
                data += TTRPC_HEADER_SIZE;
                size -= TTRPC_HEADER_SIZE;
                size_t n = h.length < size ? h.length : size;
                Ttrpc__Request *rq = ttrpc__request__unpack(NULL, n, data);
                if (rq)
                        ttrpc__request__free_unpacked(rq, NULL);
                Ttrpc__Response *rs = ttrpc__response__unpack(NULL, n, data);
                if (rs)
                        ttrpc__response__free_unpacked(rs, NULL);
                data += n;
                size -= n;
        }
}

static void fuzz_server(const uint8_t *data, size_t size)
{
        peer p;
        int fd;
        cc_error *err = NULL;

        peer_start(&p, data, size, &fd);
        int r = ttrpc_server_serve_fd(server, fd, &err);
        if ((r < 0) != (err != NULL))
                abort(); /* ret_err set iff failure */
        cc_error_free(err);
        pthread_join(p.t, NULL);
        if (parked) {
                if (ttrpc_call_reply(parked, NULL, 0) != -ENOTCONN)
                        abort();
                parked = NULL;
        }
}

static void fuzz_client(const uint8_t *data, size_t size)
{
        peer p;
        int fd;
        cc_error *err = NULL;

        peer_start(&p, data, size, &fd);
        ttrpc_client *c = ttrpc_client_new(fd, NULL);
        if (!c)
                abort();
        uint8_t *resp = NULL;
        size_t len = 0;
        int r = ttrpc_client_call(c, "s", "m", "req", 3, 0, &resp, &len, &err);
        if ((r < 0) != (err != NULL))
                abort();
        if (r == 0 && len > TTRPC_MAX_PAYLOAD)
                abort();
        free(resp);
        cc_error_free(err);
        ttrpc_client_free(c);
        pthread_join(p.t, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        fuzz_frames(data, size);
        fuzz_server(data, size);
        fuzz_client(data, size);
        return 0;
}
