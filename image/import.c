/* SPDX-License-Identifier: Apache-2.0 */
#include "image/import.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "image/commit.h"
#include "image/images.h"
#include "image/manifest.h"
#include "image/ref.h"

#define INDEX_MAX (4 << 20)

typedef struct src {
        const char *dir;   /* layout directory, or NULL for a tar */
        char *index_json;  /* tar: index.json contents */
        size_t index_len;
        bool has_layout;
        /* Blobs this import put into the store (they were not there before).
         * Those no image record references at the end are deleted again: a
         * tar's other-platform manifests, blobs nothing names, or everything
         * of a failed import. */
        char **added;
        size_t n_added, cap_added;
} src;

static int src_added(src *src, const char *digest)
{
        if (src->n_added == src->cap_added) {
                size_t cap = src->cap_added ? 2 * src->cap_added : 16;
                char **n = realloc(src->added, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                src->added = n;
                src->cap_added = cap;
        }
        if (!(src->added[src->n_added] = strdup(digest)))
                return -ENOMEM;
        src->n_added++;
        return 0;
}

/* Deletes what this import added that no image references. */
static void src_cleanup(image_store *s, image_db *db, src *src)
{
        for (size_t i = 0; i < src->n_added; i++) {
                if (!image_db_blob_referenced(db, src->added[i])) {
                        log_debug("import: dropping unreferenced blob %s", src->added[i]);
                        image_store_delete(s, src->added[i], NULL);
                }
                free(src->added[i]);
        }
        free(src->added);
        src->added = NULL;
        src->n_added = src->cap_added = 0;
}

static bool hex64(const char *s)
{
        if (strlen(s) != 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

/* Streams fd into the store as `digest` (size checked), unless present. */
static int ingest_fd(image_store *s, src *src, int fd, const char *digest, int64_t size,
                     cc_error **ret_err)
{
        _cleanup_(image_ingest_abortp) image_ingest *w = NULL;
        int r = image_store_ingest_begin(s, digest, size, &w, ret_err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (image_ingest_offset(w) > 0 && image_ingest_reset(w, ret_err) < 0)
                return -EIO;
        char buf[65536];
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0)
                        return cc_error_errno(ret_err, "read blob %s", digest);
                if (n == 0)
                        break;
                if (image_ingest_write(w, buf, (size_t)n, ret_err) < 0)
                        return -EBADMSG;
        }
        r = image_ingest_commit(TAKE_PTR(w), ret_err);
        if (r < 0)
                return r;
        if (src_added(src, digest) < 0) {
                image_store_delete(s, digest, NULL);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* Directory layouts: copy the blob the descriptor names into the store. */
static int fetch_blob(image_store *s, src *src, const char *digest, int64_t size,
                      cc_error **ret_err)
{
        if (image_store_has(s, digest) == 1)
                return 0;
        if (!src->dir)
                return cc_error_set(ret_err, -ENOENT, "blob %s is missing from the archive", digest);
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/blobs/sha256/%s", src->dir, digest + 7) < 0)
                return -ENOMEM;
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return cc_error_errno(ret_err, "open '%s'", p);
        return ingest_fd(s, src, fd, digest, size, ret_err);
}

/* Tar layouts: ingest every blobs/sha256/<hex> entry, keep index.json. */
static int read_tar(image_store *s, const char *path, src *src, cc_error **ret_err)
{
        struct archive *a = archive_read_new();
        archive_read_support_format_tar(a);
        archive_read_support_filter_all(a);
        int r = 0;
        if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
                r = cc_error_set(ret_err, -EINVAL, "'%s' is not a tar archive: %s", path, archive_error_string(a));
                goto out;
        }
        struct archive_entry *e;
        int ar;
        while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                if (strncmp(name, "./", 2) == 0)
                        name += 2;
                if (archive_entry_filetype(e) != AE_IFREG)
                        continue;
                int64_t size = archive_entry_size(e);
                if (strcmp(name, "index.json") == 0 || strcmp(name, "oci-layout") == 0) {
                        if (size < 0 || size > INDEX_MAX) {
                                r = cc_error_set(ret_err, -EFBIG, "%s: %s is too large", path, name);
                                goto out;
                        }
                        char *buf = malloc((size_t)size + 1);
                        if (!buf || archive_read_data(a, buf, (size_t)size) != size) {
                                free(buf);
                                r = cc_error_set(ret_err, -EIO, "%s: cannot read %s", path, name);
                                goto out;
                        }
                        buf[size] = 0;
                        if (strcmp(name, "index.json") == 0) {
                                free(src->index_json);
                                src->index_json = buf;
                                src->index_len = (size_t)size;
                        } else {
                                src->has_layout = strstr(buf, "imageLayoutVersion") != NULL;
                                free(buf);
                        }
                        continue;
                }
                if (strncmp(name, "blobs/sha256/", 13) != 0 || !hex64(name + 13))
                        continue;
                char digest[72];
                snprintf(digest, sizeof(digest), "sha256:%s", name + 13);
                _cleanup_(image_ingest_abortp) image_ingest *w = NULL;
                int br = image_store_ingest_begin(s, digest, size, &w, ret_err);
                if (br < 0) {
                        r = br;
                        goto out;
                }
                if (br == 1)
                        continue;
                if (image_ingest_offset(w) > 0 && image_ingest_reset(w, ret_err) < 0) {
                        r = -EIO;
                        goto out;
                }
                const void *buf;
                size_t len;
                la_int64_t off;
                while ((ar = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
                        if (image_ingest_write(w, buf, len, ret_err) < 0) {
                                r = cc_error_prefix(ret_err, "%s", path);
                                goto out;
                        }
                }
                if (ar != ARCHIVE_EOF) {
                        r = cc_error_set(ret_err, -EIO, "%s: %s", path, archive_error_string(a));
                        goto out;
                }
                if (image_ingest_commit(TAKE_PTR(w), ret_err) < 0) {
                        r = cc_error_prefix(ret_err, "%s", path);
                        goto out;
                }
                if (src_added(src, digest) < 0) {
                        image_store_delete(s, digest, NULL);
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto out;
                }
        }
        if (ar != ARCHIVE_EOF)
                r = cc_error_set(ret_err, -EIO, "%s: %s", path, archive_error_string(a));
out:
        archive_read_free(a);
        return r;
}

/* The repo tag for one index entry, or NULL (untagged). */
static int entry_name(json_object *desc, const image_import_opts *opts, char **ret, cc_error **ret_err)
{
        *ret = NULL;
        json_object *ann = cc_json_get_typed(desc, "annotations", json_type_object);
        const char *full = NULL, *tag = NULL;
        if (ann) {
                json_object *v;
                if (json_object_object_get_ex(ann, "io.containerd.image.name", &v) &&
                    json_object_is_type(v, json_type_string))
                        full = json_object_get_string(v);
                if (json_object_object_get_ex(ann, "org.opencontainers.image.ref.name", &v) &&
                    json_object_is_type(v, json_type_string))
                        tag = json_object_get_string(v);
        }
        _cleanup_free_ char *joined = NULL;
        const char *s = full;
        if (!s && tag && (strchr(tag, '/') || strchr(tag, '@')))
                s = tag;
        if (!s && tag) {
                if (!opts || !opts->name)
                        return cc_error_set(ret_err, -EINVAL,
                                            "layout entry is tagged '%s' but names no repository; "
                                            "give the repository name (--name)", tag);
                if (asprintf(&joined, "%s:%s", opts->name, tag) < 0)
                        return -ENOMEM;
                s = joined;
        }
        if (!s && opts && opts->name)
                s = opts->name;
        if (!s)
                return 0;
        _cleanup_(image_ref_freep) image_ref *ref = NULL;
        if (image_ref_parse(s, &ref, ret_err) < 0)
                return -EINVAL;
        *ret = image_ref_tagged(ref);
        return 0;
}

static int import_layout(image_store *s, image_db *db, const char *path,
                         const image_import_opts *opts, src *src, char ***ret_ids,
                         cc_error **ret_err)
{
        struct stat st;
        if (stat(path, &st) < 0)
                return cc_error_errno(ret_err, "import '%s'", path);
        _cleanup_free_ char *index_buf = NULL;
        int r;
        if (S_ISDIR(st.st_mode)) {
                src->dir = path;
                _cleanup_free_ char *lp = NULL, *ip = NULL, *layout = NULL;
                if (asprintf(&lp, "%s/oci-layout", path) < 0 || asprintf(&ip, "%s/index.json", path) < 0)
                        return -ENOMEM;
                if (cc_read_file(lp, 4096, &layout, NULL, ret_err) < 0)
                        return cc_error_prefix(ret_err, "'%s' is not an OCI image layout", path);
                src->has_layout = strstr(layout, "imageLayoutVersion") != NULL;
                if (cc_read_file(ip, INDEX_MAX, &index_buf, &src->index_len, ret_err) < 0)
                        return cc_error_prefix(ret_err, "'%s' is not an OCI image layout", path);
        } else {
                r = read_tar(s, path, src, ret_err);
                index_buf = src->index_json;
                if (r < 0)
                        return r;
                if (!index_buf)
                        return cc_error_set(ret_err, -EINVAL, "'%s' has no index.json: not an OCI image layout", path);
        }
        if (!src->has_layout)
                return cc_error_set(ret_err, -EINVAL, "'%s': missing or invalid oci-layout file", path);
        _cleanup_json_ json_object *idx = cc_json_parse(index_buf, src->index_len, INDEX_MAX, 32, "index.json", ret_err);
        if (!idx)
                return -EINVAL;
        json_object *mans = cc_json_get_typed(idx, "manifests", json_type_array);
        size_t n = mans ? json_object_array_length(mans) : 0;
        if (n == 0 || n > 256)
                return cc_error_set(ret_err, -EINVAL, "%s: index.json lists %zu images (1..256 allowed)", path, n);
        _cleanup_strv_free_ char **ids = calloc(n + 1, sizeof(char *));
        if (!ids)
                return -ENOMEM;
        size_t n_ids = 0;
        for (size_t i = 0; i < n; i++) {
                json_object *desc = json_object_array_get_idx(mans, i);
                const char *mt = NULL, *digest = NULL;
                int64_t size = 0;
                if (cc_json_get_string(desc, "mediaType", false, &mt, ret_err) < 0 ||
                    cc_json_get_string(desc, "digest", false, &digest, ret_err) < 0 ||
                    cc_json_get_int64(desc, "size", false, &size, ret_err) < 0)
                        return cc_error_prefix(ret_err, "%s: index.json entry %zu", path, i);
                if (strncmp(digest, "sha256:", 7) != 0 || !hex64(digest + 7) || size < 0 || size > INDEX_MAX)
                        return cc_error_set(ret_err, -EINVAL, "%s: index.json entry %zu: bad digest or size", path, i);
                _cleanup_free_ char *tag = NULL;
                if (entry_name(desc, opts, &tag, ret_err) < 0)
                        return cc_error_prefix(ret_err, "%s", path);
                if (fetch_blob(s, src, digest, size, ret_err) < 0)
                        return cc_error_prefix(ret_err, "%s", path);
                char manifest_digest[72];
                snprintf(manifest_digest, sizeof(manifest_digest), "%s", digest);
                if (strcmp(mt, IMAGE_MT_OCI_INDEX) == 0 || strcmp(mt, IMAGE_MT_DOCKER_LIST) == 0) {
                        _cleanup_free_ char *ib = NULL;
                        size_t il = 0;
                        _cleanup_(image_index_freep) image_index *sub = NULL;
                        const image_descriptor *pick = NULL;
                        if (image_store_read_blob(s, digest, INDEX_MAX, &ib, &il, ret_err) < 0 ||
                            image_index_parse(ib, il, &sub, ret_err) < 0 ||
                            image_index_select(sub, NULL, &pick, ret_err) < 0)
                                return cc_error_prefix(ret_err, "%s: %s", path, digest);
                        if (fetch_blob(s, src, pick->digest, pick->size, ret_err) < 0)
                                return cc_error_prefix(ret_err, "%s", path);
                        snprintf(manifest_digest, sizeof(manifest_digest), "%s", pick->digest);
                }
                _cleanup_free_ char *mb = NULL;
                size_t ml = 0;
                _cleanup_(image_manifest_freep) image_manifest *m = NULL;
                if (image_store_read_blob(s, manifest_digest, INDEX_MAX, &mb, &ml, ret_err) < 0 ||
                    image_manifest_parse(mb, ml, &m, ret_err) < 0)
                        return cc_error_prefix(ret_err, "%s: manifest %s", path, manifest_digest);
                if (fetch_blob(s, src, m->config.digest, m->config.size, ret_err) < 0)
                        return cc_error_prefix(ret_err, "%s", path);
                for (size_t l = 0; l < m->n_layers; l++)
                        if (fetch_blob(s, src, m->layers[l].digest, m->layers[l].size, ret_err) < 0)
                                return cc_error_prefix(ret_err, "%s", path);
                _cleanup_free_ char *repo_digest = NULL;
                if (tag) {
                        _cleanup_(image_ref_freep) image_ref *ref = NULL;
                        if (image_ref_parse(tag, &ref, NULL) == 0)
                                repo_digest = image_ref_with_digest(ref, digest);
                }
                image_commit_opts co = { .repo_tag = tag, .repo_digest = repo_digest };
                char *id = NULL;
                if (image_commit(s, db, manifest_digest, &co, &id, ret_err) < 0)
                        return cc_error_prefix(ret_err, "%s", path);
                ids[n_ids++] = id;
        }
        *ret_ids = TAKE_PTR(ids);
        return 0;
}

int image_import(image_store *s, image_db *db, const char *path, const image_import_opts *opts,
                 char ***ret_ids, cc_error **ret_err)
{
        src src = { 0 };
        int r = import_layout(s, db, path, opts, &src, ret_ids, ret_err);
        src_cleanup(s, db, &src);
        return r;
}
