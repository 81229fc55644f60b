/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/logs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

typedef struct pending {
        char buf[CRI_LOG_MAX_LINE];
        size_t len;
} pending;

struct runtime_log {
        pthread_mutex_t lock;
        char *path;
        int fd;
        pending p[2];
};

static const char *const stream_names[] = { "stdout", "stderr" };

int runtime_log_open(const char *path, runtime_log **ret, cc_error **ret_err)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
                return cc_error_errno(ret_err, "open container log '%s'", path);
        runtime_log *l = calloc(1, sizeof(*l));
        if (!l || !(l->path = strdup(path))) {
                free(l);
                close(fd);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        pthread_mutex_init(&l->lock, NULL);
        l->fd = fd;
        *ret = l;
        return 0;
}

static void timestamp(char out[64])
{
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t n = strftime(out, 64, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + n, 64 - n, ".%09ldZ", ts.tv_nsec);
}

/* One record: "<ts> <stream> <P|F> <text>\n" in a single write(2). */
static int emit(runtime_log *l, cri_log_stream s, char tag, const char *text, size_t len,
                cc_error **ret_err)
{
        char head[96];
        char ts[64];
        timestamp(ts);
        int hn = snprintf(head, sizeof(head), "%s %s %c ", ts, stream_names[s], tag);
        struct iovec iov[3] = { { head, (size_t)hn }, { (void *)text, len }, { "\n", 1 } };
        size_t total = (size_t)hn + len + 1;
        ssize_t n;
        do
                n = writev(l->fd, iov, 3);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return cc_error_errno(ret_err, "write container log '%s'", l->path);
        if ((size_t)n != total)
                return cc_error_set(ret_err, -EIO, "short write to container log '%s'", l->path);
        return 0;
}

int runtime_log_write(runtime_log *l, cri_log_stream s, const void *buf, size_t len,
                      cc_error **ret_err)
{
        if ((unsigned)s > CRI_LOG_STDERR)
                return cc_error_set(ret_err, -EINVAL, "bad log stream");
        const char *p = buf;
        int r = 0;
        pthread_mutex_lock(&l->lock);
        pending *pd = &l->p[s];
        while (len > 0 && r == 0) {
                const char *nl = memchr(p, '\n', len);
                size_t chunk = nl ? (size_t)(nl - p) : len;
                size_t room = CRI_LOG_MAX_LINE - pd->len;
                if (chunk >= room && !(nl && chunk == room)) {
                        /* The line is longer than a record: emit a partial. */
                        memcpy(pd->buf + pd->len, p, room);
                        r = emit(l, s, 'P', pd->buf, CRI_LOG_MAX_LINE, ret_err);
                        pd->len = 0;
                        p += room;
                        len -= room;
                        continue;
                }
                memcpy(pd->buf + pd->len, p, chunk);
                pd->len += chunk;
                p += chunk;
                len -= chunk;
                if (nl) {
                        r = emit(l, s, 'F', pd->buf, pd->len, ret_err);
                        pd->len = 0;
                        p++;
                        len--;
                }
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

int runtime_log_flush(runtime_log *l, cc_error **ret_err)
{
        int r = 0;
        pthread_mutex_lock(&l->lock);
        for (int s = 0; s < 2 && r == 0; s++) {
                if (l->p[s].len == 0)
                        continue;
                r = emit(l, (cri_log_stream)s, 'P', l->p[s].buf, l->p[s].len, ret_err);
                l->p[s].len = 0;
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

int runtime_log_reopen(runtime_log *l, cc_error **ret_err)
{
        int fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
                return cc_error_errno(ret_err, "reopen container log '%s'", l->path);
        pthread_mutex_lock(&l->lock);
        int old = l->fd;
        l->fd = fd;
        pthread_mutex_unlock(&l->lock);
        close(old);
        return 0;
}

void runtime_log_close(runtime_log *l)
{
        if (!l)
                return;
        runtime_log_flush(l, NULL);
        close(l->fd);
        pthread_mutex_destroy(&l->lock);
        free(l->path);
        free(l);
}
