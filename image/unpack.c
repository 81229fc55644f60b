/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include "image/unpack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "image/manifest.h"

#define DEFAULT_MAX_BYTES (UINT64_C(64) << 30)
#define DEFAULT_MAX_ENTRIES UINT64_C(1000000)
#define IOBUF (1 << 16)

typedef struct dirtime {
        char *path; /* cleaned, "" = root */
        struct timespec ts[2];
} dirtime;

typedef struct unpack {
        int blob_fd;
        int root_fd;
        struct archive *outer; /* decompression only: filter + raw format */
        struct archive *tar;
        EVP_MD_CTX *md;
        uint64_t total, max_bytes;
        bool bomb;
        char inbuf[IOBUF];
        char midbuf[IOBUF];
        dirtime *dirtimes;
        size_t n_dirtimes, cap_dirtimes;
} unpack;

/* ---------- streams ---------- */

static la_ssize_t outer_read(struct archive *a, void *data, const void **buf)
{
        unpack *u = data;
        for (;;) {
                ssize_t n = read(u->blob_fd, u->inbuf, sizeof(u->inbuf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        archive_set_error(a, errno, "read layer blob: %s", strerror(errno));
                        return -1;
                }
                *buf = u->inbuf;
                return n;
        }
}

/* Feeds the tar reader with the uncompressed stream, hashing it on the way. */
static la_ssize_t tar_read(struct archive *a, void *data, const void **buf)
{
        unpack *u = data;
        la_ssize_t n = archive_read_data(u->outer, u->midbuf, sizeof(u->midbuf));
        if (n < 0) {
                archive_set_error(a, archive_errno(u->outer) ?: EIO, "decompress: %s",
                                  archive_error_string(u->outer) ?: "error");
                return -1;
        }
        u->total += (uint64_t)n;
        if (u->total > u->max_bytes) {
                u->bomb = true;
                archive_set_error(a, EFBIG, "uncompressed layer exceeds %" PRIu64 " bytes",
                                  u->max_bytes);
                return -1;
        }
        if (n > 0 && EVP_DigestUpdate(u->md, u->midbuf, (size_t)n) != 1) {
                archive_set_error(a, EIO, "sha256 update failed");
                return -1;
        }
        *buf = u->midbuf;
        return n;
}

/* ---------- paths ---------- */

/* Cleans an archive path: strips "./" and duplicate slashes; rejects absolute
 * paths and ".." components. out = "" for the layer root. */
static int clean_path(const char *in, const char *what, char *out, size_t outsz,
                      cc_error **ret_err)
{
        if (!in || !*in)
                return cc_error_set(ret_err, -EINVAL, "%s: empty path", what);
        if (in[0] == '/')
                return cc_error_set(ret_err, -EPERM, "%s '%.200s': absolute path", what, in);
        size_t o = 0;
        const char *p = in;
        while (*p) {
                const char *end = strchrnul(p, '/');
                size_t n = (size_t)(end - p);
                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return cc_error_set(ret_err, -EPERM,
                                            "%s '%.200s': path escapes the layer ('..' component)",
                                            what, in);
                if (n > NAME_MAX)
                        return cc_error_set(ret_err, -ENAMETOOLONG, "%s '%.200s': name too long",
                                            what, in);
                if (n > 0 && !(n == 1 && p[0] == '.')) {
                        if (o + n + 2 > outsz)
                                return cc_error_set(ret_err, -ENAMETOOLONG,
                                                    "%s '%.200s': path too long", what, in);
                        if (o)
                                out[o++] = '/';
                        memcpy(out + o, p, n);
                        o += n;
                }
                p = *end ? end + 1 : end;
        }
        out[o] = '\0';
        return 0;
}

/* Opens the directory holding the last component of `path` (cleaned, not
 * ""), walking one component at a time with O_NOFOLLOW; missing directories
 * are created (mode 0755) if `create`. *ret_base points into path. */
static int open_parent(unpack *u, const char *path, bool create, int *ret_fd,
                       const char **ret_base, cc_error **ret_err)
{
        char buf[PATH_MAX];
        snprintf(buf, sizeof(buf), "%s", path);
        _cleanup_close_ int fd = fcntl(u->root_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return cc_error_errno(ret_err, "dup");
        char *p = buf;
        for (;;) {
                char *slash = strchr(p, '/');
                if (!slash)
                        break;
                *slash = '\0';
                int nfd = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0 && errno == ENOENT && create) {
                        if (mkdirat(fd, p, 0755) < 0 && errno != EEXIST)
                                return cc_error_errno(ret_err, "'%s': mkdir", path);
                        nfd = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                }
                if (nfd < 0) {
                        int saved = errno;
                        struct stat st;
                        if ((saved == ELOOP || saved == ENOTDIR) &&
                            fstatat(fd, p, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                                return cc_error_set(ret_err, -ELOOP,
                                                    "'%.200s': path traverses a symlink at "
                                                    "'%.200s'",
                                                    path, buf);
                        errno = saved;
                        return cc_error_errno(ret_err, "'%.200s': open '%.200s'", path, buf);
                }
                close(fd);
                fd = nfd;
                *slash = '/';
                p = slash + 1;
        }
        *ret_base = path + (p - buf);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ---------- metadata ---------- */

static bool xattr_allowed(const char *name)
{
        if (!strncmp(name, "user.", 5))
                return true;
        if (!strncmp(name, "security.", 9))
                return true;
        /* trusted.overlay.* would let a layer steer overlayfs (redirects,
         * metacopy); other trusted.* and system.* are not image content. */
        return false;
}

static int apply_meta_fd(int fd, struct archive_entry *e, const char *path, cc_error **ret_err)
{
        if (fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
                return cc_error_errno(ret_err, "'%.200s': chown", path);
        if (fchmod(fd, archive_entry_mode(e) & 07777) < 0)
                return cc_error_errno(ret_err, "'%.200s': chmod", path);
        const char *name;
        const void *value;
        size_t size;
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
                if (!name || !xattr_allowed(name)) {
                        log_debug("layer entry '%s': skipping xattr '%s'", path, name ?: "");
                        continue;
                }
                if (fsetxattr(fd, name, value, size, 0) < 0)
                        return cc_error_errno(ret_err, "'%.200s': set xattr %s", path, name);
        }
        return 0;
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
        ts[1].tv_sec = archive_entry_mtime(e);
        ts[1].tv_nsec = archive_entry_mtime_nsec(e);
        if (archive_entry_atime_is_set(e)) {
                ts[0].tv_sec = archive_entry_atime(e);
                ts[0].tv_nsec = archive_entry_atime_nsec(e);
        } else {
                ts[0] = ts[1];
        }
        if (ts[0].tv_nsec < 0 || ts[0].tv_nsec >= 1000000000)
                ts[0].tv_nsec = 0;
        if (ts[1].tv_nsec < 0 || ts[1].tv_nsec >= 1000000000)
                ts[1].tv_nsec = 0;
}

static int defer_dirtime(unpack *u, const char *path, struct archive_entry *e)
{
        if (u->n_dirtimes == u->cap_dirtimes) {
                size_t cap = u->cap_dirtimes ? u->cap_dirtimes * 2 : 64;
                dirtime *n = realloc(u->dirtimes, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                u->dirtimes = n;
                u->cap_dirtimes = cap;
        }
        dirtime *d = &u->dirtimes[u->n_dirtimes];
        if (!(d->path = strdup(path)))
                return -ENOMEM;
        entry_times(e, d->ts);
        u->n_dirtimes++;
        return 0;
}

static int apply_dirtimes(unpack *u, cc_error **ret_err)
{
        /* deepest first is not needed: futimens on a directory does not
         * change its parent's mtime */
        for (size_t i = 0; i < u->n_dirtimes; i++) {
                dirtime *d = &u->dirtimes[i];
                if (!*d->path) {
                        if (futimens(u->root_fd, d->ts) < 0)
                                return cc_error_errno(ret_err, "layer root: set times");
                        continue;
                }
                _cleanup_close_ int pfd = -1;
                const char *base;
                int r = open_parent(u, d->path, false, &pfd, &base, ret_err);
                if (r < 0)
                        return r;
                _cleanup_close_ int fd =
                        openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                                continue; /* replaced later in the layer */
                        return cc_error_errno(ret_err, "'%.200s': open", d->path);
                }
                if (futimens(fd, d->ts) < 0)
                        return cc_error_errno(ret_err, "'%.200s': set times", d->path);
        }
        return 0;
}

/* ---------- entries ---------- */

static int copy_data(unpack *u, int fd, const char *path, cc_error **ret_err)
{
        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t off;
                int r = archive_read_data_block(u->tar, &buf, &size, &off);
                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN)
                        return cc_error_set(ret_err, u->bomb ? -EFBIG : -EIO, "'%.200s': %s",
                                            path, archive_error_string(u->tar) ?: "read error");
                const char *p = buf;
                while (size > 0) {
                        ssize_t n = pwrite(fd, p, size, off);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                return cc_error_errno(ret_err, "'%.200s': write", path);
                        }
                        p += n;
                        off += n;
                        size -= (size_t)n;
                }
        }
}

static int handle_whiteout(unpack *u, int pfd, const char *path, const char *base,
                           cc_error **ret_err)
{
        if (!strcmp(base, ".wh..wh..opq")) {
                if (fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
                        return cc_error_errno(ret_err, "'%.200s': set opaque xattr", path);
                return 0;
        }
        if (!strncmp(base, ".wh..wh.", 8)) {
                log_debug("layer: ignoring whiteout metadata '%s'", path);
                return 0;
        }
        const char *name = base + 4;
        if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
                return cc_error_set(ret_err, -EPERM, "'%.200s': invalid whiteout", path);
        int r = image_rm_rf_at(pfd, name);
        if (r < 0)
                return cc_error_set(ret_err, r, "'%.200s': %s", path, strerror(-r));
        if (mknodat(pfd, name, S_IFCHR | 0000, makedev(0, 0)) < 0)
                return cc_error_errno(ret_err, "'%.200s': create whiteout", path);
        return 0;
}

static int handle_hardlink(unpack *u, int pfd, const char *path, const char *base,
                           const char *target_raw, cc_error **ret_err)
{
        char target[PATH_MAX];
        _cleanup_free_ char *what = NULL;
        if (asprintf(&what, "hardlink '%.200s' target", path) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int r = clean_path(target_raw, what, target, sizeof(target), ret_err);
        if (r < 0)
                return r;
        if (!*target)
                return cc_error_set(ret_err, -EPERM, "hardlink '%.200s' to the layer root", path);
        _cleanup_close_ int tfd = -1;
        const char *tbase;
        r = open_parent(u, target, false, &tfd, &tbase, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "hardlink '%.200s'", path);
        struct stat st;
        if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return cc_error_set(ret_err, -EPERM,
                                    "hardlink '%.200s': target '%.200s' is not in the layer",
                                    path, target);
        if (S_ISDIR(st.st_mode))
                return cc_error_set(ret_err, -EPERM, "hardlink '%.200s' to a directory", path);
        if (!strcmp(path, target))
                return 0;
        r = image_rm_rf_at(pfd, base);
        if (r < 0)
                return cc_error_set(ret_err, r, "'%.200s': %s", path, strerror(-r));
        if (linkat(tfd, tbase, pfd, base, 0) < 0)
                return cc_error_errno(ret_err, "hardlink '%.200s' -> '%.200s'", path, target);
        return 0;
}

static int handle_entry(unpack *u, struct archive_entry *e, cc_error **ret_err)
{
        const char *raw = archive_entry_pathname(e);
        if (!raw)
                raw = archive_entry_pathname_utf8(e);
        char path[PATH_MAX];
        int r = clean_path(raw, "entry", path, sizeof(path), ret_err);
        if (r < 0)
                return r;
        mode_t type = archive_entry_filetype(e);
        la_int64_t esize = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
        if (esize < 0 || (uint64_t)esize > u->max_bytes)
                return cc_error_set(ret_err, -EFBIG,
                                    "entry '%.200s' declares %" PRId64 " bytes (limit %" PRIu64
                                    ")",
                                    path, (int64_t)esize, u->max_bytes);
        if (archive_entry_uid(e) < 0 || archive_entry_uid(e) >= UINT32_MAX ||
            archive_entry_gid(e) < 0 || archive_entry_gid(e) >= UINT32_MAX)
                return cc_error_set(ret_err, -EINVAL, "entry '%.200s': invalid owner", path);

        if (!*path) { /* the layer root itself */
                if (type != AE_IFDIR)
                        return cc_error_set(ret_err, -EPERM, "layer root entry is not a directory");
                r = apply_meta_fd(u->root_fd, e, "/", ret_err);
                if (r < 0)
                        return r;
                return defer_dirtime(u, "", e) < 0 ? cc_error_set(ret_err, -ENOMEM, "oom") : 0;
        }

        _cleanup_close_ int pfd = -1;
        const char *base;
        r = open_parent(u, path, true, &pfd, &base, ret_err);
        if (r < 0)
                return r;
        if (!strncmp(base, ".wh.", 4))
                return handle_whiteout(u, pfd, path, base, ret_err);
        const char *hl = archive_entry_hardlink(e);
        if (!hl)
                hl = archive_entry_hardlink_utf8(e);
        if (hl)
                return handle_hardlink(u, pfd, path, base, hl, ret_err);

        struct stat st;
        bool exists = fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (exists && !(type == AE_IFDIR && S_ISDIR(st.st_mode))) {
                r = image_rm_rf_at(pfd, base);
                if (r < 0)
                        return cc_error_set(ret_err, r, "'%.200s': replace: %s", path,
                                            strerror(-r));
        }
        struct timespec ts[2];
        entry_times(e, ts);
        uid_t uid = (uid_t)archive_entry_uid(e);
        gid_t gid = (gid_t)archive_entry_gid(e);
        mode_t perm = archive_entry_mode(e) & 07777;

        switch (type) {
        case AE_IFDIR: {
                if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
                        return cc_error_errno(ret_err, "'%.200s': mkdir", path);
                _cleanup_close_ int fd =
                        openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return cc_error_errno(ret_err, "'%.200s': open", path);
                r = apply_meta_fd(fd, e, path, ret_err);
                if (r < 0)
                        return r;
                if (defer_dirtime(u, path, e) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                return 0;
        }
        case AE_IFREG: {
                _cleanup_close_ int fd = openat(
                        pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return cc_error_errno(ret_err, "'%.200s': create", path);
                r = copy_data(u, fd, path, ret_err);
                if (r < 0)
                        return r;
                if (ftruncate(fd, esize) < 0)
                        return cc_error_errno(ret_err, "'%.200s': truncate", path);
                r = apply_meta_fd(fd, e, path, ret_err);
                if (r < 0)
                        return r;
                if (futimens(fd, ts) < 0)
                        return cc_error_errno(ret_err, "'%.200s': set times", path);
                return 0;
        }
        case AE_IFLNK: {
                const char *target = archive_entry_symlink(e);
                if (!target)
                        target = archive_entry_symlink_utf8(e);
                if (!target || !*target || strlen(target) >= PATH_MAX)
                        return cc_error_set(ret_err, -EINVAL, "'%.200s': bad symlink target",
                                            path);
                /* the target is stored verbatim and never followed by us */
                if (symlinkat(target, pfd, base) < 0)
                        return cc_error_errno(ret_err, "'%.200s': symlink", path);
                if (fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return cc_error_errno(ret_err, "'%.200s': chown", path);
                if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
                        return cc_error_errno(ret_err, "'%.200s': set times", path);
                return 0;
        }
        case AE_IFCHR:
        case AE_IFBLK:
        case AE_IFIFO: {
                dev_t dev = type == AE_IFIFO ? 0 : makedev(archive_entry_rdevmajor(e),
                                                           archive_entry_rdevminor(e));
                if (mknodat(pfd, base, type | perm, dev) < 0)
                        return cc_error_errno(ret_err, "'%.200s': mknod", path);
                if (fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return cc_error_errno(ret_err, "'%.200s': chown", path);
                /* we just created it; no symlink can be there */
                if (fchmodat(pfd, base, perm, 0) < 0)
                        return cc_error_errno(ret_err, "'%.200s': chmod", path);
                if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
                        return cc_error_errno(ret_err, "'%.200s': set times", path);
                return 0;
        }
        case AE_IFSOCK:
                log_debug("layer: skipping socket '%s'", path);
                return 0;
        default:
                return cc_error_set(ret_err, -EINVAL, "'%.200s': unsupported entry type 0%o",
                                    path, (unsigned)type);
        }
}

static void unpack_clear(unpack *u)
{
        if (u->tar)
                archive_read_free(u->tar);
        if (u->outer)
                archive_read_free(u->outer);
        EVP_MD_CTX_free(u->md);
        for (size_t i = 0; i < u->n_dirtimes; i++)
                free(u->dirtimes[i].path);
        free(u->dirtimes);
}

static int sniff(int fd, image_compression *ret, cc_error **ret_err)
{
        unsigned char m[4] = { 0 };
        ssize_t n = pread(fd, m, sizeof(m), 0);
        if (n < 0)
                return cc_error_errno(ret_err, "read layer blob");
        if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
                *ret = IMAGE_COMPRESSION_GZIP;
        else if (n == 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
                *ret = IMAGE_COMPRESSION_ZSTD;
        else
                *ret = IMAGE_COMPRESSION_NONE;
        return 0;
}

int image_unpack_fd(int blob_fd, const char *media_type, int dest_dirfd,
                    const image_unpack_opts *opts, char ret_diff_id[IMAGE_DIGEST_BUFSIZE],
                    cc_error **ret_err)
{
        image_compression declared = IMAGE_COMPRESSION_NONE, actual = IMAGE_COMPRESSION_NONE;
        bool foreign;
        int r = image_layer_media_type(media_type, &declared, &foreign, ret_err);
        if (r < 0)
                return r;
        r = sniff(blob_fd, &actual, ret_err);
        if (r < 0)
                return r;
        if (declared != actual)
                /* as containerd: trust the bytes (mislabelled layers exist) */
                log_debug("layer labelled %s is %s-compressed", media_type,
                          image_compression_to_string(actual));
        if (lseek(blob_fd, 0, SEEK_SET) < 0)
                return cc_error_errno(ret_err, "seek layer blob");

        _cleanup_(unpack_clear) unpack u = {
                .blob_fd = blob_fd,
                .root_fd = dest_dirfd,
                .max_bytes = opts && opts->max_bytes ? opts->max_bytes : DEFAULT_MAX_BYTES,
        };
        uint64_t max_entries =
                opts && opts->max_entries ? opts->max_entries : DEFAULT_MAX_ENTRIES;
        u.md = EVP_MD_CTX_new();
        if (!u.md || EVP_DigestInit_ex(u.md, EVP_sha256(), NULL) != 1)
                return cc_error_set(ret_err, -ENOMEM, "sha256 init failed");

        u.outer = archive_read_new();
        u.tar = archive_read_new();
        if (!u.outer || !u.tar)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        if (actual == IMAGE_COMPRESSION_GZIP)
                r = archive_read_support_filter_gzip(u.outer);
        else if (actual == IMAGE_COMPRESSION_ZSTD)
                r = archive_read_support_filter_zstd(u.outer);
        else
                r = ARCHIVE_OK;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
                return cc_error_set(ret_err, -ENOTSUP, "libarchive lacks %s support",
                                    image_compression_to_string(actual));
        struct archive_entry *raw_entry;
        if (archive_read_support_format_raw(u.outer) != ARCHIVE_OK ||
            archive_read_open(u.outer, &u, NULL, outer_read, NULL) != ARCHIVE_OK ||
            archive_read_next_header(u.outer, &raw_entry) != ARCHIVE_OK)
                return cc_error_set(ret_err, -EIO, "open layer stream: %s",
                                    archive_error_string(u.outer) ?: "error");
        if (archive_read_support_format_tar(u.tar) != ARCHIVE_OK ||
            archive_read_open(u.tar, &u, NULL, tar_read, NULL) != ARCHIVE_OK)
                return cc_error_set(ret_err, -EIO, "open layer tar: %s",
                                    archive_error_string(u.tar) ?: "error");

        uint64_t entries = 0;
        for (;;) {
                struct archive_entry *e;
                r = archive_read_next_header(u.tar, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        return cc_error_set(ret_err, u.bomb ? -EFBIG : -EIO, "layer tar: %s",
                                            archive_error_string(u.tar) ?: "read error");
                if (++entries > max_entries)
                        return cc_error_set(ret_err, -EFBIG, "layer has more than %" PRIu64
                                            " entries", max_entries);
                r = handle_entry(&u, e, ret_err);
                if (r < 0)
                        return r;
        }
        /* hash what follows the end-of-archive marker too: the diff id covers
         * the whole uncompressed stream */
        for (;;) {
                const void *buf;
                la_ssize_t n = tar_read(u.tar, &u, &buf);
                if (n < 0)
                        return cc_error_set(ret_err, u.bomb ? -EFBIG : -EIO, "layer stream: %s",
                                            archive_error_string(u.tar) ?: "read error");
                if (n == 0)
                        break;
        }
        r = apply_dirtimes(&u, ret_err);
        if (r < 0)
                return r;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_DigestFinal_ex(u.md, md, &mdlen) != 1 || mdlen != 32)
                return cc_error_set(ret_err, -EIO, "sha256 final failed");
        image_digest_format(md, ret_diff_id);
        return 0;
}

/* ---------- layer directories ---------- */

int image_layer_has(image_store *s, const char *chain_id)
{
        if (!image_digest_valid(chain_id))
                return -EINVAL;
        char p[128];
        snprintf(p, sizeof(p), "layers/sha256/%s/diff", image_digest_hex(chain_id));
        struct stat st;
        if (fstatat(image_store_root_fd(s), p, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        return S_ISDIR(st.st_mode) ? 1 : 0;
}

char *image_layer_path(image_store *s, const char *chain_id)
{
        char *p = NULL;
        if (!image_digest_valid(chain_id))
                return NULL;
        if (asprintf(&p, "%s/layers/sha256/%s/diff", image_store_root(s),
                     image_digest_hex(chain_id)) < 0)
                return NULL;
        return p;
}

int image_layer_delete(image_store *s, const char *chain_id, cc_error **ret_err)
{
        int r = image_digest_check(chain_id, "layer", ret_err);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = openat(image_store_root_fd(s), "layers/sha256",
                                         O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return cc_error_errno(ret_err, "open layers");
        /* rename away first so a half-deleted layer never looks complete */
        char rnd[17], tmp[64];
        if (image_random_hex(rnd, 16) < 0)
                return cc_error_set(ret_err, -EIO, "random failed");
        snprintf(tmp, sizeof(tmp), "../tmp/del-%s", rnd);
        if (renameat(dfd, image_digest_hex(chain_id), dfd, tmp) < 0)
                return errno == ENOENT ? 0 : cc_error_errno(ret_err, "delete layer %s", chain_id);
        r = image_rm_rf_at(dfd, tmp);
        if (r < 0)
                return cc_error_set(ret_err, r, "delete layer %s: %s", chain_id, strerror(-r));
        return 0;
}

int image_layer_cleanup_tmp(image_store *s, cc_error **ret_err)
{
        _cleanup_close_ int fd = openat(image_store_root_fd(s), "layers/tmp",
                                        O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return cc_error_errno(ret_err, "open layers/tmp");
        DIR *d = fdopendir(fd);
        if (!d)
                return cc_error_errno(ret_err, "open layers/tmp");
        fd = -1;
        _cleanup_closedir_ DIR *dd = d;
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                int k = image_rm_rf_at(dirfd(d), de->d_name);
                if (k < 0 && r == 0)
                        r = cc_error_set(ret_err, k, "remove layers/tmp/%s: %s", de->d_name,
                                         strerror(-k));
        }
        return r;
}

int image_layer_unpack(image_store *s, const char *blob_digest, const char *media_type,
                       const char *diff_id, const char *chain_id, const image_unpack_opts *opts,
                       cc_error **ret_err)
{
        int r;
        if ((r = image_digest_check(blob_digest, "layer blob", ret_err)) < 0 ||
            (r = image_digest_check(diff_id, "layer diff_id", ret_err)) < 0 ||
            (r = image_digest_check(chain_id, "layer chain id", ret_err)) < 0)
                return r;
        r = image_layer_has(s, chain_id);
        if (r != 0)
                return r > 0 ? 1 : cc_error_set(ret_err, r, "layer %s: %s", chain_id, strerror(-r));

        _cleanup_close_ int blob_fd = -1;
        r = image_store_open_blob(s, blob_digest, &blob_fd, NULL, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "layer %s", blob_digest);
        int root = image_store_root_fd(s);
        _cleanup_close_ int tmp_fd = openat(root, "layers/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int layers_fd =
                openat(root, "layers/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (tmp_fd < 0 || layers_fd < 0)
                return cc_error_errno(ret_err, "open layer directories");
        char rnd[17];
        if (image_random_hex(rnd, 16) < 0)
                return cc_error_set(ret_err, -EIO, "random failed");
        if (mkdirat(tmp_fd, rnd, 0700) < 0)
                return cc_error_errno(ret_err, "create layer work dir");

        _cleanup_close_ int work_fd = -1, diff_fd = -1;
        work_fd = openat(tmp_fd, rnd, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (work_fd < 0 || mkdirat(work_fd, "diff", 0755) < 0 ||
            (diff_fd = openat(work_fd, "diff", O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                       O_CLOEXEC)) < 0) {
                r = cc_error_errno(ret_err, "create layer work dir");
                goto fail;
        }
        char got[IMAGE_DIGEST_BUFSIZE];
        r = image_unpack_fd(blob_fd, media_type, diff_fd, opts, got, ret_err);
        if (r < 0)
                goto fail;
        if (strcmp(got, diff_id) != 0) {
                r = cc_error_set(ret_err, -EBADMSG, "diff id mismatch: expected %s, got %s",
                                 diff_id, got);
                goto fail;
        }
        char meta[IMAGE_DIGEST_BUFSIZE + 1];
        snprintf(meta, sizeof(meta), "%s\n", diff_id);
        if ((r = image_write_file_atomic_at(work_fd, "diff_id", meta, strlen(meta), 0444)) < 0 ||
            (snprintf(meta, sizeof(meta), "%s\n", blob_digest),
             (r = image_write_file_atomic_at(work_fd, "blob", meta, strlen(meta), 0444)) < 0)) {
                r = cc_error_set(ret_err, r, "write layer metadata: %s", strerror(-r));
                goto fail;
        }
        if (syncfs(diff_fd) < 0) {
                r = cc_error_errno(ret_err, "sync layer");
                goto fail;
        }
        if (renameat(tmp_fd, rnd, layers_fd, image_digest_hex(chain_id)) < 0) {
                if (errno == EEXIST || errno == ENOTEMPTY) { /* a concurrent unpack won */
                        image_rm_rf_at(tmp_fd, rnd);
                        return 1;
                }
                r = cc_error_errno(ret_err, "move layer into place");
                goto fail;
        }
        (void)fsync(layers_fd);
        return 0;
fail:
        image_rm_rf_at(tmp_fd, rnd);
        return cc_error_prefix(ret_err, "layer %s", blob_digest);
}
