/* SPDX-License-Identifier: Apache-2.0 */
/* image_import leaves no unreferenced blob in the store: a tar's blobs that
 * no imported image uses (other platforms of an index, junk) are dropped, and
 * a failed import takes back every blob it added; blobs that were in the
 * store before are never touched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "image/images.h"
#include "image/import.h"
#include "image/manifest.h"
#include "image/store.h"
#include "image/util.h"

#define MT_LAYER "application/vnd.oci.image.layer.v1.tar"

static char root[64];  /* store */
static char work[64];  /* layouts */

static int setup(void **state)
{
        strcpy(root, "/tmp/image-import-XXXXXX");
        strcpy(work, "/tmp/image-layout-XXXXXX");
        assert_non_null(mkdtemp(root));
        assert_non_null(mkdtemp(work));
        return 0;
}

static int teardown(void **state)
{
        image_rm_rf_at(AT_FDCWD, root);
        image_rm_rf_at(AT_FDCWD, work);
        return 0;
}

/* ---- a tiny OCI layout builder ---- */

typedef struct file {
        char name[128];
        char *data;
        size_t len;
} file;

typedef struct layout {
        file files[32];
        size_t n;
} layout;

static void add(layout *l, const char *name, const void *data, size_t len)
{
        assert_true(l->n < 32);
        file *f = &l->files[l->n++];
        snprintf(f->name, sizeof(f->name), "%s", name);
        f->data = malloc(len + 1);
        memcpy(f->data, data, len);
        f->len = len;
}

/* Adds a blob; writes its digest into out. */
static void blob(layout *l, const void *data, size_t len, char out[IMAGE_DIGEST_BUFSIZE])
{
        assert_int_equal(image_sha256_buf(data, len, out), 0);
        char name[128];
        snprintf(name, sizeof(name), "blobs/sha256/%s", out + 7);
        add(l, name, data, len);
}

static void layout_free(layout *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->files[i].data);
        l->n = 0;
}

/* An uncompressed tar of the given (name, content) files. */
static char *tar_of(const file *files, size_t n, size_t *ret_len)
{
        size_t cap = 1 << 20, used = 0;
        char *buf = malloc(cap);
        struct archive *a = archive_write_new();
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, files[i].name);
                archive_entry_set_filetype(e, AE_IFREG);
                archive_entry_set_perm(e, 0644);
                archive_entry_set_size(e, (la_int64_t)files[i].len);
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                assert_int_equal(archive_write_data(a, files[i].data, files[i].len),
                                 (la_ssize_t)files[i].len);
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        *ret_len = used;
        return buf;
}

typedef struct image {
        char layer[IMAGE_DIGEST_BUFSIZE], config[IMAGE_DIGEST_BUFSIZE],
                manifest[IMAGE_DIGEST_BUFSIZE];
        size_t manifest_size;
} image;

/* One single-layer image for arch; its blobs go into l unless skip_layer. */
static void make_image(layout *l, const char *arch, const char *content, bool skip_layer, image *img)
{
        file f = { .data = (char *)content, .len = strlen(content) };
        snprintf(f.name, sizeof(f.name), "etc/%s", arch);
        size_t tlen = 0;
        _cleanup_free_ char *t = tar_of(&f, 1, &tlen);
        if (skip_layer)
                assert_int_equal(image_sha256_buf(t, tlen, img->layer), 0);
        else
                blob(l, t, tlen, img->layer);
        _cleanup_free_ char *cfg = NULL, *man = NULL;
        assert_true(asprintf(&cfg,
                             "{\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{},"
                             "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
                             arch, img->layer) > 0);
        blob(l, cfg, strlen(cfg), img->config);
        assert_true(asprintf(&man,
                             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
                             "\"%s\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
                             "\"%s\",\"digest\":\"%s\",\"size\":%zu}]}",
                             IMAGE_MT_OCI_MANIFEST, IMAGE_MT_OCI_CONFIG, img->config, strlen(cfg),
                             MT_LAYER, img->layer, tlen) > 0);
        blob(l, man, strlen(man), img->manifest);
        img->manifest_size = strlen(man);
}

static void finish(layout *l, const char *mt, const char *digest, size_t size)
{
        const char *ol = "{\"imageLayoutVersion\":\"1.0.0\"}";
        add(l, "oci-layout", ol, strlen(ol));
        _cleanup_free_ char *idx = NULL;
        assert_true(asprintf(&idx,
                             "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":"
                             "\"%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers.image."
                             "ref.name\":\"v1\"}}]}",
                             mt, digest, size) > 0);
        add(l, "index.json", idx, strlen(idx));
}

static const char *write_tar(layout *l, const char *name)
{
        static char path[128];
        snprintf(path, sizeof(path), "%s/%s", work, name);
        size_t len = 0;
        _cleanup_free_ char *t = tar_of(l->files, l->n, &len);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, t, len), (ssize_t)len);
        return path;
}

static const char *write_dir(layout *l, const char *name)
{
        static char path[128];
        snprintf(path, sizeof(path), "%s/%s", work, name);
        char p[512];
        snprintf(p, sizeof(p), "%s/blobs/sha256", path);
        assert_int_equal(image_mkdir_p_at(AT_FDCWD, p, 0755), 0);
        for (size_t i = 0; i < l->n; i++) {
                snprintf(p, sizeof(p), "%s/%s", path, l->files[i].name);
                _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, l->files[i].data, l->files[i].len),
                                 (ssize_t)l->files[i].len);
        }
        return path;
}

/* The store's committed blobs, as a sorted, comma-joined string of digests. */
static char *store_blobs(void)
{
        char p[128];
        snprintf(p, sizeof(p), "%s/blobs/sha256", root);
        struct dirent **names = NULL;
        int n = scandir(p, &names, NULL, alphasort);
        char *out = strdup("");
        for (int i = 0; i < n; i++) {
                if (names[i]->d_name[0] != '.') {
                        char *o = NULL;
                        assert_true(asprintf(&o, "%s%ssha256:%s", out, *out ? "," : "",
                                             names[i]->d_name) > 0);
                        free(out);
                        out = o;
                }
                free(names[i]);
        }
        free(names);
        return out;
}

static char *joined(const char *const *digests)
{
        /* sorted like scandir's alphasort on the hex part */
        size_t n = 0;
        while (digests[n])
                n++;
        const char **v = calloc(n + 1, sizeof(*v));
        memcpy(v, digests, n * sizeof(*v));
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        if (strcmp(v[i], v[j]) > 0) {
                                const char *t = v[i];
                                v[i] = v[j];
                                v[j] = t;
                        }
        char *out = strdup("");
        for (size_t i = 0; i < n; i++) {
                char *o = NULL;
                assert_true(asprintf(&o, "%s%s%s", out, *out ? "," : "", v[i]) > 0);
                free(out);
                out = o;
        }
        free(v);
        return out;
}

static bool no_partials(void)
{
        char p[128];
        snprintf(p, sizeof(p), "%s/ingest", root);
        DIR *d = opendir(p);
        if (!d)
                return true;
        struct dirent *e;
        bool none = true;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        none = false;
        closedir(d);
        return none;
}

static const char *host_arch(void)
{
        static char arch[32];
        image_platform *p = NULL;
        assert_int_equal(image_platform_host(&p, NULL), 0);
        snprintf(arch, sizeof(arch), "%s", p->architecture);
        image_platform_free(p);
        return arch;
}

/* A blob that was in the store before any import. */
static void put_preexisting(image_store *s, char out[IMAGE_DIGEST_BUFSIZE])
{
        const char *pre = "already here";
        assert_int_equal(image_sha256_buf(pre, strlen(pre), out), 0);
        assert_int_equal(image_store_write_blob(s, out, pre, strlen(pre), NULL), 0);
}

static void test_tar_keeps_only_what_the_image_uses(void **state)
{
        image_store *s = NULL;
        image_db *db = NULL;
        cc_error *err = NULL;
        assert_int_equal(image_store_open(root, &s, &err), 0);
        assert_int_equal(image_db_open(s, &db, &err), 0);
        char pre[IMAGE_DIGEST_BUFSIZE];
        put_preexisting(s, pre);

        const char *arch = host_arch();
        const char *other = strcmp(arch, "s390x") ? "s390x" : "amd64";
        layout l = { 0 };
        image mine, theirs;
        make_image(&l, arch, "mine\n", false, &mine);
        make_image(&l, other, "theirs\n", false, &theirs);
        char junk[IMAGE_DIGEST_BUFSIZE], idx[IMAGE_DIGEST_BUFSIZE];
        blob(&l, "junk nobody names", 17, junk);
        _cleanup_free_ char *index = NULL;
        assert_true(asprintf(&index,
                             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
                             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":"
                             "{\"architecture\":\"%s\",\"os\":\"linux\"}},"
                             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":"
                             "{\"architecture\":\"%s\",\"os\":\"linux\"}}]}",
                             IMAGE_MT_OCI_INDEX, IMAGE_MT_OCI_MANIFEST, theirs.manifest,
                             theirs.manifest_size, other, IMAGE_MT_OCI_MANIFEST, mine.manifest,
                             mine.manifest_size, arch) > 0);
        blob(&l, index, strlen(index), idx);
        finish(&l, IMAGE_MT_OCI_INDEX, idx, strlen(index));
        const char *tar = write_tar(&l, "multi.tar");

        image_import_opts opts = { .name = "test/imp" };
        char **ids = NULL;
        if (image_import(s, db, tar, &opts, &ids, &err) < 0)
                fail_msg("import: %s", err->msg);
        assert_non_null(ids[0]);
        assert_string_equal(ids[0], mine.config);
        assert_null(ids[1]);
        cc_strv_free(ids);

        /* The index (the repo digest), the picked manifest, its config and
         * layer, and what was there before. Not the other platform's blobs,
         * not the junk. */
        const char *want[] = { pre, idx, mine.manifest, mine.config, mine.layer, NULL };
        _cleanup_free_ char *w = joined(want);
        _cleanup_free_ char *got = store_blobs();
        assert_string_equal(got, w);
        assert_true(no_partials());

        /* Importing it again changes nothing. */
        ids = NULL;
        assert_int_equal(image_import(s, db, tar, &opts, &ids, &err), 0);
        cc_strv_free(ids);
        _cleanup_free_ char *again = store_blobs();
        assert_string_equal(again, w);

        /* Removing the image takes its blobs; the pre-existing one stays. */
        bool removed = false;
        assert_int_equal(image_db_remove(db, mine.config, &removed, &err), 0);
        assert_true(removed);
        _cleanup_free_ char *after = store_blobs();
        assert_string_equal(after, pre);

        layout_free(&l);
        image_db_free(db);
        image_store_free(s);
}

static void test_failed_tar_import_takes_its_blobs_back(void **state)
{
        image_store *s = NULL;
        image_db *db = NULL;
        cc_error *err = NULL;
        assert_int_equal(image_store_open(root, &s, &err), 0);
        assert_int_equal(image_db_open(s, &db, &err), 0);
        char pre[IMAGE_DIGEST_BUFSIZE];
        put_preexisting(s, pre);

        layout l = { 0 };
        image img;
        make_image(&l, host_arch(), "layerless\n", true, &img); /* the layer is not in the tar */
        finish(&l, IMAGE_MT_OCI_MANIFEST, img.manifest, img.manifest_size);
        const char *tar = write_tar(&l, "broken.tar");
        image_import_opts opts = { .name = "test/broken" };
        char **ids = NULL;
        assert_int_equal(image_import(s, db, tar, &opts, &ids, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "missing from the archive"));
        assert_non_null(strstr(err->msg, img.layer));
        cc_error_free(err);
        err = NULL;
        _cleanup_free_ char *got = store_blobs();
        assert_string_equal(got, pre);
        assert_true(no_partials());

        /* Not valid JSON in index.json: nothing stays either. */
        layout_free(&l);
        make_image(&l, host_arch(), "bad index\n", false, &img);
        const char *ol = "{\"imageLayoutVersion\":\"1.0.0\"}";
        add(&l, "oci-layout", ol, strlen(ol));
        add(&l, "index.json", "{not json", 9);
        tar = write_tar(&l, "badindex.tar");
        assert_int_equal(image_import(s, db, tar, &opts, &ids, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        _cleanup_free_ char *got2 = store_blobs();
        assert_string_equal(got2, pre);

        layout_free(&l);
        image_db_free(db);
        image_store_free(s);
}

static void test_failed_dir_import_takes_its_blobs_back(void **state)
{
        image_store *s = NULL;
        image_db *db = NULL;
        cc_error *err = NULL;
        assert_int_equal(image_store_open(root, &s, &err), 0);
        assert_int_equal(image_db_open(s, &db, &err), 0);

        layout l = { 0 };
        image img;
        make_image(&l, host_arch(), "dir layout\n", false, &img);
        finish(&l, IMAGE_MT_OCI_MANIFEST, img.manifest, img.manifest_size);
        /* Corrupt the layer on disk: same size, other bytes. */
        for (size_t i = 0; i < l.n; i++)
                if (strstr(l.files[i].name, img.layer + 7))
                        l.files[i].data[l.files[i].len / 2] ^= 0x55;
        const char *dir = write_dir(&l, "dirlayout");
        image_import_opts opts = { .name = "test/dir" };
        char **ids = NULL;
        assert_true(image_import(s, db, dir, &opts, &ids, &err) < 0);
        assert_non_null(strstr(err->msg, img.layer));
        cc_error_free(err);
        _cleanup_free_ char *got = store_blobs();
        assert_string_equal(got, ""); /* manifest and config went back out */
        assert_true(no_partials());

        layout_free(&l);
        image_db_free(db);
        image_store_free(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_tar_keeps_only_what_the_image_uses, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_failed_tar_import_takes_its_blobs_back,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_dir_import_takes_its_blobs_back,
                                                setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
