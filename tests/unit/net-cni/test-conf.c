/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "net-cni/conf.h"

static char *mkdtemp_dir(void)
{
        char *d = strdup("/tmp/test-netcni-conf-XXXXXX");
        assert_non_null(mkdtemp(d));
        return d;
}

static void put(const char *dir, const char *name, const char *content)
{
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
}

static void rmdir_all(char *d)
{
        assert_int_equal(cc_rm_rf(d, NULL), 0);
        free(d);
}

static const char *LIST_A =
        "{\"cniVersion\":\"1.0.0\",\"name\":\"net-a\",\"plugins\":["
        "{\"type\":\"bridge\",\"bridge\":\"cni0\"},"
        "{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true,\"bandwidth\":false}}]}";

static void test_lexical_order(void **state)
{
        char *d = mkdtemp_dir();
        put(d, "20-b.conflist", "{\"cniVersion\":\"0.4.0\",\"name\":\"net-b\",\"plugins\":[{\"type\":\"ptp\"}]}");
        put(d, "10-a.conflist", LIST_A);
        put(d, "05-ignored.txt", "not a config");
        cni_netconf *n = NULL;
        cc_error *err = NULL;
        assert_int_equal(cni_conf_load_dir(d, &n, &err), 0);
        assert_string_equal(n->name, "net-a");
        assert_string_equal(n->cni_version, "1.0.0");
        assert_int_equal(n->n_plugins, 2);
        assert_string_equal(n->plugins[0].type, "bridge");
        assert_null(n->plugins[0].capabilities[0]);
        assert_true(cni_plugin_has_capability(&n->plugins[1], "portMappings"));
        assert_false(cni_plugin_has_capability(&n->plugins[1], "bandwidth"));
        assert_false(n->disable_check);
        assert_int_equal(n->n_skipped, 0);
        assert_non_null(strstr(n->path, "10-a.conflist"));
        cni_netconf_unref(n);
        rmdir_all(d);
}

static void test_invalid_skipped(void **state)
{
        char *d = mkdtemp_dir();
        put(d, "00-broken.conflist", "{\"cniVersion\":");
        put(d, "01-noplugins.conflist", "{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"plugins\":[]}");
        put(d, "02-badversion.conflist", "{\"cniVersion\":\"9.9.9\",\"name\":\"x\",\"plugins\":[{\"type\":\"a\"}]}");
        put(d, "03-badtype.conflist", "{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"plugins\":[{\"type\":\"../../bin/sh\"}]}");
        put(d, "04-badname.conflist", "{\"cniVersion\":\"1.0.0\",\"name\":\"a/b\",\"plugins\":[{\"type\":\"a\"}]}");
        put(d, "05-notype.conf", "{\"cniVersion\":\"1.0.0\",\"name\":\"x\"}");
        put(d, "10-good.conflist", LIST_A);
        cni_netconf *n = NULL;
        cc_error *err = NULL;
        assert_int_equal(cni_conf_load_dir(d, &n, &err), 0);
        assert_string_equal(n->name, "net-a");
        assert_int_equal(n->n_skipped, 6);
        assert_string_equal(n->skipped[0].file, "00-broken.conflist");
        assert_non_null(strstr(n->skipped[0].reason, "invalid JSON"));
        assert_non_null(strstr(n->skipped[1].reason, "no plugins"));
        assert_non_null(strstr(n->skipped[2].reason, "unsupported cniVersion '9.9.9'"));
        assert_non_null(strstr(n->skipped[3].reason, "invalid plugin type"));
        assert_non_null(strstr(n->skipped[4].reason, "invalid network name"));
        assert_non_null(strstr(n->skipped[5].reason, "no \"type\""));
        cni_netconf_unref(n);
        rmdir_all(d);
}

static void test_conf_wrapped(void **state)
{
        char *d = mkdtemp_dir();
        put(d, "10-single.conf",
            "{\"cniVersion\":\"0.3.1\",\"name\":\"single\",\"type\":\"bridge\",\"disableCheck\":true,"
            "\"ipam\":{\"type\":\"host-local\"}}");
        cni_netconf *n = NULL;
        cc_error *err = NULL;
        assert_int_equal(cni_conf_load_dir(d, &n, &err), 0);
        assert_string_equal(n->name, "single");
        assert_string_equal(n->cni_version, "0.3.1");
        assert_true(n->disable_check);
        assert_int_equal(n->n_plugins, 1);
        assert_string_equal(n->plugins[0].type, "bridge");
        json_object *ipam = NULL;
        assert_true(json_object_object_get_ex(n->plugins[0].conf, "ipam", &ipam));
        json_object *pl = NULL;
        assert_true(json_object_object_get_ex(n->raw, "plugins", &pl));
        assert_int_equal(json_object_array_length(pl), 1);
        cni_netconf_unref(n);
        rmdir_all(d);
}

static void test_none_found(void **state)
{
        char *d = mkdtemp_dir();
        cni_netconf *n = NULL;
        cc_error *err = NULL;
        assert_int_equal(cni_conf_load_dir(d, &n, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "no network config found in"));
        cc_error_free(err);
        err = NULL;
        put(d, "10-x.json", "[]");
        assert_int_equal(cni_conf_load_dir(d, &n, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "skipped"));
        assert_non_null(strstr(err->msg, "not a JSON object"));
        cc_error_free(err);
        err = NULL;
        assert_int_equal(cni_conf_load_dir("/nonexistent-cni-dir", &n, &err), -ENOENT);
        cc_error_free(err);
        rmdir_all(d);
}

static void test_loader_reload(void **state)
{
        char *d = mkdtemp_dir();
        cni_conf_loader *l = cni_conf_loader_new(d);
        cni_netconf *n = NULL, *n2 = NULL;
        cc_error *err = NULL;
        assert_int_equal(cni_conf_loader_get(l, &n, &err), -ENOENT);
        cc_error_free(err);
        err = NULL;
        put(d, "10-a.conflist", LIST_A);
        assert_int_equal(cni_conf_loader_get(l, &n, &err), 0);
        assert_string_equal(n->name, "net-a");
        /* Unchanged directory: the same object. */
        assert_int_equal(cni_conf_loader_get(l, &n2, &err), 0);
        assert_ptr_equal(n, n2);
        cni_netconf_unref(n2);
        /* An earlier file appears: reloaded; the old reference stays valid. */
        put(d, "05-b.conflist", "{\"cniVersion\":\"0.4.0\",\"name\":\"net-b\",\"plugins\":[{\"type\":\"ptp\"}]}");
        assert_int_equal(cni_conf_loader_get(l, &n2, &err), 0);
        assert_string_equal(n2->name, "net-b");
        assert_string_equal(n->name, "net-a");
        cni_netconf_unref(n);
        cni_netconf_unref(n2);
        cni_conf_loader_free(l);
        rmdir_all(d);
}

static void test_versions(void **state)
{
        assert_true(cni_version_supported("0.3.0"));
        assert_true(cni_version_supported("1.0.0"));
        assert_false(cni_version_supported("0.2.0"));
        assert_true(cni_version_compare("0.3.1", "0.4.0") < 0);
        assert_true(cni_version_compare("1.0.0", "0.4.0") > 0);
        assert_int_equal(cni_version_compare("0.4.0", "0.4.0"), 0);
        assert_true(cni_version_compare("garbage", "0.1.0") < 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lexical_order), cmocka_unit_test(test_invalid_skipped),
                cmocka_unit_test(test_conf_wrapped),  cmocka_unit_test(test_none_found),
                cmocka_unit_test(test_loader_reload), cmocka_unit_test(test_versions),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
