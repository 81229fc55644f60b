/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include "image/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "image/manifest.h"
#include "image/util.h"

typedef struct inflight {
        char digest[IMAGE_DIGEST_BUFSIZE];
        bool active;
        unsigned waiters;
        struct inflight *next;
} inflight;

struct image_store {
        char *root;
        int root_fd, blobs_fd, ingest_fd;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        inflight *inflight;
};

struct image_ingest {
        image_store *store;
        inflight *slot;
        char digest[IMAGE_DIGEST_BUFSIZE];
        char name[96]; /* partial file name in ingest/ */
        int fd;
        int64_t expected, offset;
        EVP_MD_CTX *md;
};

static void evp_freep(EVP_MD_CTX **c) { EVP_MD_CTX_free(*c); }

static int open_dir(int dirfd, const char *path)
{
        return openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

int image_store_open(const char *root, image_store **ret, cc_error **ret_err)
{
        if (!root || root[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "image store root must be absolute");
        int r = image_mkdir_p_at(AT_FDCWD, root, 0700);
        if (r < 0)
                return cc_error_set(ret_err, r, "create image store %s: %s", root, strerror(-r));
        image_store *s = calloc(1, sizeof(*s));
        if (!s)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        s->root_fd = s->blobs_fd = s->ingest_fd = -1;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        _cleanup_(image_store_freep) image_store *ss = s;
        if (!(s->root = strdup(root)))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        s->root_fd = open_dir(AT_FDCWD, root);
        if (s->root_fd < 0)
                return cc_error_errno(ret_err, "open image store %s", root);
        static const char *const dirs[] = { "blobs/sha256", "ingest", "layers/sha256",
                                            "layers/tmp" };
        for (size_t i = 0; i < CC_ARRAY_SIZE(dirs); i++) {
                r = image_mkdir_p_at(s->root_fd, dirs[i], 0700);
                if (r < 0)
                        return cc_error_set(ret_err, r, "create %s/%s: %s", root, dirs[i],
                                            strerror(-r));
        }
        s->blobs_fd = open_dir(s->root_fd, "blobs/sha256");
        s->ingest_fd = open_dir(s->root_fd, "ingest");
        if (s->blobs_fd < 0 || s->ingest_fd < 0)
                return cc_error_errno(ret_err, "open image store %s", root);
        *ret = TAKE_PTR(ss);
        return 0;
}

void image_store_free(image_store *s)
{
        if (!s)
                return;
        if (s->root_fd >= 0)
                close(s->root_fd);
        if (s->blobs_fd >= 0)
                close(s->blobs_fd);
        if (s->ingest_fd >= 0)
                close(s->ingest_fd);
        while (s->inflight) {
                inflight *n = s->inflight->next;
                free(s->inflight);
                s->inflight = n;
        }
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s->root);
        free(s);
}

const char *image_store_root(const image_store *s) { return s->root; }
int image_store_root_fd(const image_store *s) { return s->root_fd; }

int image_store_has(image_store *s, const char *digest)
{
        if (!image_digest_valid(digest))
                return -EINVAL;
        struct stat st;
        if (fstatat(s->blobs_fd, image_digest_hex(digest), &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        return S_ISREG(st.st_mode) ? 1 : 0;
}

int image_store_open_blob(image_store *s, const char *digest, int *ret_fd, int64_t *ret_size,
                          cc_error **ret_err)
{
        int r = image_digest_check(digest, "blob", ret_err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd =
                openat(s->blobs_fd, image_digest_hex(digest), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return cc_error_errno(ret_err, "blob %s", digest);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return cc_error_errno(ret_err, "blob %s", digest);
        if (!S_ISREG(st.st_mode))
                return cc_error_set(ret_err, -EBADF, "blob %s: not a regular file", digest);
        if (ret_size)
                *ret_size = st.st_size;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int hash_fd(int fd, EVP_MD_CTX *md, int64_t *ret_len)
{
        static const size_t BUFSZ = 1 << 16;
        _cleanup_free_ char *buf = malloc(BUFSZ);
        if (!buf)
                return -ENOMEM;
        int64_t total = 0;
        for (;;) {
                ssize_t n = read(fd, buf, BUFSZ);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                if (EVP_DigestUpdate(md, buf, (size_t)n) != 1)
                        return -EIO;
                total += n;
        }
        if (ret_len)
                *ret_len = total;
        return 0;
}

static int md_final(EVP_MD_CTX *md, char out[IMAGE_DIGEST_BUFSIZE])
{
        unsigned char raw[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (EVP_DigestFinal_ex(md, raw, &len) != 1 || len != 32)
                return -EIO;
        image_digest_format(raw, out);
        return 0;
}

int image_store_verify(image_store *s, const char *digest, cc_error **ret_err)
{
        _cleanup_close_ int fd = -1;
        int r = image_store_open_blob(s, digest, &fd, NULL, ret_err);
        if (r < 0)
                return r;
        _cleanup_(evp_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
                return cc_error_set(ret_err, -ENOMEM, "sha256 init failed");
        char got[IMAGE_DIGEST_BUFSIZE];
        r = hash_fd(fd, md, NULL);
        if (r < 0 || (r = md_final(md, got)) < 0)
                return cc_error_set(ret_err, r, "blob %s: read: %s", digest, strerror(-r));
        if (strcmp(got, digest) != 0) {
                unlinkat(s->blobs_fd, image_digest_hex(digest), 0);
                return cc_error_set(ret_err, -EBADMSG,
                                    "blob %s is corrupt (content hashes to %s); removed", digest,
                                    got);
        }
        return 0;
}

int image_store_read_blob(image_store *s, const char *digest, size_t max, char **ret_buf,
                          size_t *ret_len, cc_error **ret_err)
{
        _cleanup_close_ int fd = -1;
        int64_t size = 0;
        int r = image_store_open_blob(s, digest, &fd, &size, ret_err);
        if (r < 0)
                return r;
        if (size < 0 || (uint64_t)size > max)
                return cc_error_set(ret_err, -E2BIG, "blob %s: %" PRId64 " bytes exceeds %zu",
                                    digest, size, max);
        _cleanup_free_ char *buf = malloc((size_t)size + 1);
        if (!buf)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        size_t got = 0;
        while (got < (size_t)size) {
                ssize_t n = read(fd, buf + got, (size_t)size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return cc_error_errno(ret_err, "blob %s: read", digest);
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        if (got != (size_t)size)
                return cc_error_set(ret_err, -EIO, "blob %s: short read", digest);
        buf[got] = '\0';
        char d[IMAGE_DIGEST_BUFSIZE];
        if (image_sha256_buf(buf, got, d) < 0)
                return cc_error_set(ret_err, -EIO, "sha256 failed");
        if (strcmp(d, digest) != 0)
                return cc_error_set(ret_err, -EBADMSG, "blob %s is corrupt (hashes to %s)",
                                    digest, d);
        *ret_buf = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = got;
        return 0;
}

int image_store_delete(image_store *s, const char *digest, cc_error **ret_err)
{
        int r = image_digest_check(digest, "blob", ret_err);
        if (r < 0)
                return r;
        if (unlinkat(s->blobs_fd, image_digest_hex(digest), 0) < 0 && errno != ENOENT)
                return cc_error_errno(ret_err, "delete blob %s", digest);
        return 0;
}

/* ---------- ingest ---------- */

static inflight *slot_find(image_store *s, const char *digest)
{
        for (inflight *i = s->inflight; i; i = i->next)
                if (!strcmp(i->digest, digest))
                        return i;
        return NULL;
}

static void slot_release(image_store *s, inflight *slot)
{
        pthread_mutex_lock(&s->lock);
        slot->active = false;
        if (slot->waiters == 0) {
                for (inflight **p = &s->inflight; *p; p = &(*p)->next)
                        if (*p == slot) {
                                *p = slot->next;
                                break;
                        }
                free(slot);
        }
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

static void ingest_free(image_ingest *w, bool unlink_partial)
{
        if (!w)
                return;
        if (w->fd >= 0) {
                if (unlink_partial)
                        unlinkat(w->store->ingest_fd, w->name, 0);
                close(w->fd); /* drops the flock */
        }
        EVP_MD_CTX_free(w->md);
        if (w->slot)
                slot_release(w->store, w->slot);
        free(w);
}

static int md_restart(image_ingest *w)
{
        return EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

int image_store_ingest_begin(image_store *s, const char *expected_digest, int64_t expected_size,
                             image_ingest **ret, cc_error **ret_err)
{
        int r = image_digest_check(expected_digest, "ingest", ret_err);
        if (r < 0)
                return r;
        if (expected_size < 0 || expected_size > IMAGE_BLOB_SIZE_MAX)
                return cc_error_set(ret_err, -EINVAL, "ingest %s: invalid size %" PRId64,
                                    expected_digest, expected_size);

        inflight *slot = NULL;
        pthread_mutex_lock(&s->lock);
        for (;;) {
                r = image_store_has(s, expected_digest);
                if (r != 0)
                        break;
                slot = slot_find(s, expected_digest);
                if (!slot || !slot->active)
                        break;
                slot->waiters++;
                pthread_cond_wait(&s->cond, &s->lock);
                slot->waiters--;
                if (!slot->active && slot->waiters == 0) {
                        /* last one out frees a finished slot */
                        for (inflight **p = &s->inflight; *p; p = &(*p)->next)
                                if (*p == slot) {
                                        *p = slot->next;
                                        break;
                                }
                        free(slot);
                }
                slot = NULL;
        }
        if (r != 0) {
                pthread_mutex_unlock(&s->lock);
                if (r < 0)
                        return cc_error_set(ret_err, r, "ingest %s: %s", expected_digest,
                                            strerror(-r));
                return 1;
        }
        if (!slot) {
                slot = calloc(1, sizeof(*slot));
                if (!slot) {
                        pthread_mutex_unlock(&s->lock);
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                }
                memcpy(slot->digest, expected_digest, IMAGE_DIGEST_BUFSIZE);
                slot->next = s->inflight;
                s->inflight = slot;
        }
        slot->active = true;
        pthread_mutex_unlock(&s->lock);

        image_ingest *w = calloc(1, sizeof(*w));
        if (!w) {
                slot_release(s, slot);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        w->store = s;
        w->slot = slot;
        w->fd = -1;
        w->expected = expected_size;
        memcpy(w->digest, expected_digest, IMAGE_DIGEST_BUFSIZE);
        snprintf(w->name, sizeof(w->name), "sha256-%s.partial", image_digest_hex(expected_digest));
        w->md = EVP_MD_CTX_new();
        if (!w->md || md_restart(w) < 0) {
                ingest_free(w, false);
                return cc_error_set(ret_err, -ENOMEM, "sha256 init failed");
        }
        w->fd = openat(s->ingest_fd, w->name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (w->fd < 0) {
                r = cc_error_errno(ret_err, "ingest %s: open partial", expected_digest);
                ingest_free(w, false);
                return r;
        }
        if (flock(w->fd, LOCK_EX | LOCK_NB) < 0) {
                r = cc_error_set(ret_err, errno == EWOULDBLOCK ? -EBUSY : -errno,
                                 "ingest %s: partial is locked by another process",
                                 expected_digest);
                close(w->fd);
                w->fd = -1;
                ingest_free(w, false);
                return r;
        }
        /* Resume: rehash what an earlier attempt left behind. */
        struct stat st;
        if (fstat(w->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                r = cc_error_set(ret_err, -EIO, "ingest %s: bad partial", expected_digest);
                ingest_free(w, true);
                return r;
        }
        if (st.st_size > expected_size) {
                if (ftruncate(w->fd, 0) < 0) {
                        r = cc_error_errno(ret_err, "ingest %s: truncate", expected_digest);
                        ingest_free(w, true);
                        return r;
                }
                st.st_size = 0;
        }
        if (st.st_size > 0) {
                r = hash_fd(w->fd, w->md, &w->offset);
                if (r < 0 || w->offset != st.st_size) {
                        /* start over */
                        if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0 ||
                            md_restart(w) < 0) {
                                r = cc_error_errno(ret_err, "ingest %s: reset", expected_digest);
                                ingest_free(w, true);
                                return r;
                        }
                        w->offset = 0;
                }
                log_debug("ingest %s: resuming at %" PRId64 " of %" PRId64, expected_digest,
                          w->offset, expected_size);
        }
        if (lseek(w->fd, w->offset, SEEK_SET) < 0) {
                r = cc_error_errno(ret_err, "ingest %s: seek", expected_digest);
                ingest_free(w, true);
                return r;
        }
        *ret = w;
        return 0;
}

int64_t image_ingest_offset(const image_ingest *w) { return w->offset; }

int image_ingest_reset(image_ingest *w, cc_error **ret_err)
{
        if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
                return cc_error_errno(ret_err, "ingest %s: reset", w->digest);
        if (md_restart(w) < 0)
                return cc_error_set(ret_err, -EIO, "ingest %s: sha256 init failed", w->digest);
        w->offset = 0;
        return 0;
}

int image_ingest_write(image_ingest *w, const void *buf, size_t len, cc_error **ret_err)
{
        if (len > (uint64_t)(w->expected - w->offset)) {
                int r = cc_error_set(ret_err, -EFBIG,
                                     "blob %s: more data than the expected %" PRId64 " bytes",
                                     w->digest, w->expected);
                (void)ftruncate(w->fd, 0);
                w->offset = 0;
                md_restart(w);
                return r;
        }
        const char *p = buf;
        size_t left = len;
        while (left > 0) {
                ssize_t n = write(w->fd, p, left);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return cc_error_errno(ret_err, "blob %s: write", w->digest);
                }
                p += n;
                left -= (size_t)n;
        }
        if (EVP_DigestUpdate(w->md, buf, len) != 1)
                return cc_error_set(ret_err, -EIO, "blob %s: sha256 update failed", w->digest);
        w->offset += (int64_t)len;
        return 0;
}

int image_ingest_commit(image_ingest *w, cc_error **ret_err)
{
        int r;
        if (w->offset != w->expected) {
                r = cc_error_set(ret_err, -EPIPE,
                                 "blob %s: short content: got %" PRId64 " of %" PRId64 " bytes",
                                 w->digest, w->offset, w->expected);
                ingest_free(w, false); /* keep the prefix for a resume */
                return r;
        }
        char got[IMAGE_DIGEST_BUFSIZE];
        if (md_final(w->md, got) < 0) {
                r = cc_error_set(ret_err, -EIO, "blob %s: sha256 failed", w->digest);
                ingest_free(w, true);
                return r;
        }
        if (strcmp(got, w->digest) != 0) {
                r = cc_error_set(ret_err, -EBADMSG,
                                 "blob digest mismatch: expected %s, got %s", w->digest, got);
                ingest_free(w, true);
                return r;
        }
        if (fsync(w->fd) < 0 || fchmod(w->fd, 0444) < 0) {
                r = cc_error_errno(ret_err, "blob %s: fsync", w->digest);
                ingest_free(w, true);
                return r;
        }
        if (renameat(w->store->ingest_fd, w->name, w->store->blobs_fd,
                     image_digest_hex(w->digest)) < 0) {
                r = cc_error_errno(ret_err, "blob %s: rename into place", w->digest);
                ingest_free(w, true);
                return r;
        }
        (void)fsync(w->store->blobs_fd);
        ingest_free(w, false);
        return 0;
}

void image_ingest_abort(image_ingest *w, bool keep_partial) { ingest_free(w, !keep_partial); }

int image_store_write_blob(image_store *s, const char *digest, const void *buf, size_t len,
                           cc_error **ret_err)
{
        image_ingest *w = NULL;
        int r = image_store_ingest_begin(s, digest, (int64_t)len, &w, ret_err);
        if (r < 0)
                return r;
        if (r == 1)
                return 0;
        if (w->offset > 0 && (r = image_ingest_reset(w, ret_err)) < 0) {
                image_ingest_abort(w, false);
                return r;
        }
        r = image_ingest_write(w, buf, len, ret_err);
        if (r < 0) {
                image_ingest_abort(w, false);
                return r;
        }
        return image_ingest_commit(w, ret_err);
}
