/* SPDX-License-Identifier: Apache-2.0 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/config.h"
#include "common/toml.h"

#ifndef TOP_SRCDIR
#error "TOP_SRCDIR must be defined"
#endif

static char tmpdir[64];

static int setup(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-config-XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        char *cmd = NULL;
        if (asprintf(&cmd, "rm -rf '%s'", tmpdir) < 0)
                return -1;
        int r = system(cmd);
        free(cmd);
        return r == 0 ? 0 : -1;
}

/* Writes content to tmpdir/name (creating cocoon.d when named); returns the
 * path (static buffer rotation is avoided: caller frees). */
static char *write_file(const char *name, const char *content)
{
        char *path = NULL;
        assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
        char *slash = strrchr(path, '/');
        *slash = 0;
        mkdir(path, 0755);
        *slash = '/';
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(content, f);
        assert_int_equal(fclose(f), 0);
        return path;
}

static char *read_all(const char *path)
{
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char *s = NULL;
        size_t cap = 0;
        ssize_t n = getdelim(&s, &cap, '\0', f);
        assert_true(n >= 0);
        fclose(f);
        return s;
}

static void test_defaults(void **state)
{
        _cleanup_config_ cc_config *c = cc_config_new_default();
        assert_string_equal(c->server.listen, "unix:///run/cocoon/cocoon.sock");
        assert_string_equal(c->server.socket_mode, "0660");
        assert_int_equal(c->server.socket_mode_bits, 0660);
        assert_string_equal(c->server.socket_group, "");
        assert_int_equal(c->server.workers, 16);
        assert_int_equal(c->server.max_recv_message_size, 16777216);
        assert_int_equal(c->server.max_send_message_size, 16777216);
        assert_int_equal(c->server.shutdown_timeout, 10);
        assert_true(c->server.enable_v1alpha2);
        assert_int_equal(c->log.level, CC_LOG_INFO);
        assert_string_equal(c->paths.root, "/var/lib/cocoon");
        assert_string_equal(c->paths.state, "/run/cocoon");
        assert_int_equal(c->image.max_concurrent_downloads, 3);
        assert_int_equal(c->image.pull_timeout, 0);
        assert_int_equal(c->image.max_manifest_size, 4194304);
        assert_string_equal(c->image.default_registry, "docker.io");
        assert_int_equal(c->image.n_registries, 0);
        assert_string_equal(c->runtime.default_handler, "");
        assert_true(c->runtime.allow_host_mode);
        assert_int_equal(c->runtime.n_handlers, 0);
        assert_string_equal(c->vm.qemu, "/usr/bin/qemu-system-x86_64");
        assert_string_equal(c->vm.virtiofsd, "/usr/lib/qemu/virtiofsd");
        assert_string_equal(c->vm.kernel, COCOON_SHAREDIR "/vmlinux");
        assert_string_equal(c->vm.initrd, COCOON_SHAREDIR "/initrd.img");
        assert_int_equal(c->vm.accel, CC_CONFIG_ACCEL_AUTO);
        assert_string_equal(c->vm.machine, "microvm");
        assert_int_equal(c->vm.default_vcpus, 1);
        assert_int_equal(c->vm.default_memory_mib, 256);
        assert_int_equal(c->vm.max_vcpus, 8);
        assert_int_equal(c->vm.max_memory_mib, 16384);
        assert_int_equal(c->vm.memory_overhead_mib, 64);
        assert_int_equal(c->vm.tcg_tb_size_mib, 64);
        assert_string_equal(c->vm.kernel_params, "");
        assert_int_equal(c->vm.agent_timeout, 30);
        assert_true(c->vm.console_log);
        assert_string_equal(c->cni.conf_dir, "/etc/cni/net.d");
        assert_string_equal(c->cni.bin_dirs[0], "/opt/cni/bin");
        assert_string_equal(c->cni.bin_dirs[1], "/usr/lib/cni");
        assert_null(c->cni.bin_dirs[2]);
        assert_string_equal(c->cni.netns_dir, "/run/netns");
        assert_int_equal(c->cni.plugin_timeout, 60);
        assert_string_equal(c->cni.cache_dir, "/var/lib/cocoon/cni");
        assert_string_equal(c->streaming.address, "127.0.0.1");
        assert_int_equal(c->streaming.port, 0);
        assert_int_equal(c->streaming.token_ttl, 30);
        assert_int_equal(c->streaming.idle_timeout, 14400);
        assert_int_equal(cc_config_validate(c, NULL), 0);

        /* The dump is valid TOML with every schema key. */
        _cleanup_free_ char *dump = cc_config_dump(c);
        cc_error *err = NULL;
        _cleanup_toml_ cc_toml_value *t = cc_toml_parse(dump, strlen(dump), "dump", &err);
        assert_non_null(t);
        const char *key, *doc;
        size_t n = 0;
        for (size_t i = 0; cc_config_schema_key(i, &key, &doc); i++, n++) {
                assert_non_null(doc);
                if (strchr(key, '*'))
                        continue;
                char sect[32];
                const char *dot = strchr(key, '.');
                snprintf(sect, sizeof(sect), "%.*s", (int)(dot - key), key);
                if (!cc_toml_get(cc_toml_get(t, sect), dot + 1))
                        fail_msg("dump lacks %s", key);
        }
        /* Every key is checked above; this only guards against an empty
         * or truncated schema walk (the schema grows with each issue). */
        assert_true(n >= 45);
        cc_config_free(NULL);
}

static void test_load_valid(void **state)
{
        _cleanup_free_ char *p = write_file("valid.toml",
                "# a comment\n"
                "log.level = \"debug\"\n"
                "[server]\n"
                "listen = \"unix:///tmp/x.sock\"\n"
                "socket_mode = \"600\"\n"
                "socket_group = \"kube\"\n"
                "workers = 0x10_0\n"
                "enable_v1alpha2 = false\n"
                "[vm]\n"
                "accel = 'tcg'\n"
                "kernel_params = \"console=hvc0 quiet\"\n"
                "[cni]\n"
                "bin_dirs = [\n  \"/a\",\n  \"/b\",\n  \"/c\",\n]\n"
                "[streaming]\n"
                "address = \"::1\"\n"
                "port = 10010\n"
                "[image.registries.\"docker.io\"]\n"
                "mirrors = [\"https://mirror.example.com/v2\", \"http://10.0.0.1:5000\"]\n"
                "[image.registries.'[fd00::1]:5000']\n"
                "plain_http = true\n"
                "insecure_skip_verify = true\n"
                "[runtime]\n"
                "default_handler = \"kata\"\n"
                "handlers.kata.mode = \"vm\"\n"
                "[runtime.handlers.host]\n"
                "mode = \"host\"\n");
        _cleanup_config_ cc_config *c = NULL;
        cc_error *err = NULL;
        int r = cc_config_load(&c, p, NULL, true, &err);
        if (r < 0)
                fail_msg("%s", err->msg);
        assert_int_equal(c->log.level, CC_LOG_DEBUG);
        assert_string_equal(c->server.listen, "unix:///tmp/x.sock");
        assert_int_equal(c->server.socket_mode_bits, 0600);
        assert_string_equal(c->server.socket_group, "kube");
        assert_int_equal(c->server.workers, 256);
        assert_false(c->server.enable_v1alpha2);
        assert_int_equal(c->vm.accel, CC_CONFIG_ACCEL_TCG);
        assert_string_equal(cc_config_accel_to_string(c->vm.accel), "tcg");
        assert_string_equal(c->vm.kernel_params, "console=hvc0 quiet");
        assert_string_equal(c->cni.bin_dirs[2], "/c");
        assert_null(c->cni.bin_dirs[3]);
        assert_string_equal(c->streaming.address, "::1");
        assert_int_equal(c->streaming.port, 10010);
        assert_int_equal(c->image.n_registries, 2);
        const cc_config_registry *d = cc_config_find_registry(c, "docker.io");
        assert_non_null(d);
        assert_string_equal(d->mirrors[0], "https://mirror.example.com/v2");
        assert_string_equal(d->mirrors[1], "http://10.0.0.1:5000");
        assert_null(d->mirrors[2]);
        assert_false(d->plain_http);
        const cc_config_registry *l = cc_config_find_registry(c, "[fd00::1]:5000");
        assert_non_null(l);
        assert_null(l->mirrors[0]);
        assert_true(l->plain_http);
        assert_true(l->insecure_skip_verify);
        assert_null(cc_config_find_registry(c, "quay.io"));
        assert_int_equal(c->runtime.n_handlers, 2);
        assert_string_equal(c->runtime.handlers[0].name, "kata");
        assert_int_equal(c->runtime.handlers[0].mode, CC_CONFIG_MODE_VM);
        assert_int_equal(cc_config_find_handler(c, "host")->mode, CC_CONFIG_MODE_HOST);
        assert_string_equal(cc_config_mode_to_string(CC_CONFIG_MODE_HOST), "host");
        assert_string_equal(c->runtime.default_handler, "kata");
}

typedef struct err_case {
        const char *doc;
        const char *want; /* the message after the file path */
} err_case;

static const err_case err_cases[] = {
        {"[server]\nfoo = 1\n", ":2:1: unknown key 'server.foo'"},
        {"[serverr]\n", ":1:2: unknown key 'serverr'"},
        {"[server.x]\n", ":1:9: unknown key 'server.x'"},
        {"\"server.workers\" = 3\n", ":1:1: unknown key '\"server.workers\"'"},
        {"server.workers = \"4\"\n", ":1:18: server.workers: expected an integer, got a string"},
        {"[server]\nworkers = 0\n", ":2:11: server.workers: 0 is out of range 1..1024"},
        {"[server]\nworkers = 1025\n", ":2:11: server.workers: 1025 is out of range 1..1024"},
        {"[server]\nenable_v1alpha2 = \"yes\"\n", ":2:19: server.enable_v1alpha2: expected a boolean, got a string"},
        {"[server]\nlisten = \"tcp://1.2.3.4:5\"\n",
         ":2:10: server.listen: invalid value \"tcp://1.2.3.4:5\": must be unix:///ABSOLUTE/PATH"},
        {"[server]\nsocket_mode = \"0999\"\n",
         ":2:15: server.socket_mode: invalid value \"0999\": must be an octal mode between 000 and 0777, e.g. \"0660\""},
        {"[server]\nsocket_group = \"-x\"\n",
         ":2:16: server.socket_group: invalid value \"-x\": must be a group name or numeric gid"},
        {"server = 1\n", ":1:10: server: expected a table, got an integer"},
        {"[log]\nlevel = \"verbose\"\n",
         ":2:9: log.level: invalid value \"verbose\": must be \"error\", \"warn\", \"info\" or \"debug\""},
        {"[paths]\nroot = \"var/lib\"\n", ":2:8: paths.root: invalid value \"var/lib\": must be an absolute path"},
        {"[paths]\nstate = \"/run/../etc\"\n",
         ":2:9: paths.state: invalid value \"/run/../etc\": must not contain '..' components"},
        {"[paths]\nstate = \"/run/cocoon-state-x\"\n",
         ":2:9: paths.state: invalid value \"/run/cocoon-state-x\": too long: pod sockets "
         "(STATE/sandboxes/<64-char id>/virtiofsd.sock) must fit in the 107 bytes of a unix socket path, "
         "so at most 17 bytes"},
        {"[vm]\naccel = 1\n", ":2:9: vm.accel: expected a string, got an integer"},
        {"[vm]\naccel = \"hvf\"\n", ":2:9: vm.accel: invalid value \"hvf\": must be \"auto\", \"kvm\" or \"tcg\""},
        {"[vm]\nconsole_log = [true]\n", ":2:15: vm.console_log: expected a boolean, got an array"},
        {"[vm]\nmachine = \"q35 -x\"\n",
         ":2:11: vm.machine: invalid value \"q35 -x\": must be a QEMU machine type (characters [A-Za-z0-9_.,=-])"},
        {"[vm]\nkernel_params = \"a\\nb\"\n", ":2:17: vm.kernel_params: invalid value \"a\nb\": must be printable ASCII"},
        {"[vm]\nx = 1.0\n", ":2:5: floats are unsupported"},
        {"[cni]\nbin_dirs = [\"/ok\",\n  3]\n", ":3:3: cni.bin_dirs: expected an array of strings, got an integer item"},
        {"[cni]\nbin_dirs = [\"/ok\", \"rel\"]\n", ":2:20: cni.bin_dirs: invalid item \"rel\": must be an absolute path"},
        {"[cni]\nbin_dirs = []\n", ":2:12: cni.bin_dirs: needs 1 to 64 items, got 0"},
        {"[cni]\nbin_dirs = \"/x\"\n", ":2:12: cni.bin_dirs: expected an array of strings, got a string"},
        {"[streaming]\naddress = \"localhost\"\n",
         ":2:11: streaming.address: invalid value \"localhost\": must be an IPv4 or IPv6 address"},
        {"[streaming]\nport = 65536\n", ":2:8: streaming.port: 65536 is out of range 0..65535"},
        {"[image]\nregistries = 1\n", ":2:14: image.registries: expected a table, got an integer"},
        {"[image]\ndefault_registry = \"https://docker.io\"\n",
         ":2:20: image.default_registry: invalid value \"https://docker.io\": must be HOST or HOST:PORT (no scheme, no path)"},
        {"[image.registries]\n\"docker.io\" = 1\n",
         ":2:15: image.registries.\"docker.io\": expected a table, got an integer"},
        {"[image.registries.\"bad host\"]\n",
         ":1:19: image.registries.\"bad host\": invalid name \"bad host\": must be HOST or HOST:PORT (no scheme, no path)"},
        {"[image.registries.\"h:0\"]\n",
         ":1:19: image.registries.\"h:0\": invalid name \"h:0\": must be HOST or HOST:PORT (no scheme, no path)"},
        {"[image.registries.\"docker.io\"]\nfoo = 1\n", ":2:1: unknown key 'image.registries.\"docker.io\".foo'"},
        {"[image.registries.\"docker.io\"]\nmirrors = [\"ftp://x\"]\n",
         ":2:12: image.registries.\"docker.io\".mirrors: invalid item \"ftp://x\": must be an http:// or https:// URL"},
        {"[image.registries.\"docker.io\"]\nmirrors = [\"https://a b/\"]\n",
         ":2:12: image.registries.\"docker.io\".mirrors: invalid item \"https://a b/\": URL must have a valid HOST[:PORT]"},
        {"[image.registries.\"docker.io\"]\nplain_http = 1\n",
         ":2:14: image.registries.\"docker.io\".plain_http: expected a boolean, got an integer"},
        {"[runtime.handlers.x]\nmode = \"container\"\n",
         ":2:8: runtime.handlers.x.mode: invalid value \"container\": must be \"vm\" or \"host\""},
        {"[runtime.handlers.\"-x\"]\n", ":1:19: runtime.handlers.-x: invalid name \"-x\": handler names are 1-63 "
                                       "characters [A-Za-z0-9._-] starting with a letter or digit"},
        {"[runtime]\ndefault_handler = \"a b\"\n",
         ":2:19: runtime.default_handler: invalid value \"a b\": handler names are 1-63 characters [A-Za-z0-9._-] "
         "starting with a letter or digit"},
};

static void test_errors(void **state)
{
        for (size_t i = 0; i < CC_ARRAY_SIZE(err_cases); i++) {
                _cleanup_free_ char *p = write_file("bad.toml", err_cases[i].doc);
                _cleanup_config_ cc_config *c = cc_config_new_default();
                _cleanup_free_ char *before = cc_config_dump(c);
                cc_error *err = NULL;
                int r = cc_config_load_file(c, p, &err);
                if (r >= 0 || !err)
                        fail_msg("case %zu (%s): loaded but should fail", i, err_cases[i].doc);
                assert_int_equal(r, err->code);
                _cleanup_free_ char *want = NULL;
                assert_true(asprintf(&want, "%s%s", p, err_cases[i].want) > 0);
                if (strcmp(err->msg, want) != 0)
                        fail_msg("case %zu: got\n  %s\nwant\n  %s", i, err->msg, want);
                cc_error_free(err);
                /* A failed file leaves the configuration untouched. */
                _cleanup_free_ char *after = cc_config_dump(c);
                assert_string_equal(before, after);
        }
}

static void test_failed_file_is_atomic(void **state)
{
        _cleanup_free_ char *p = write_file("half.toml",
                                            "[server]\nworkers = 7\n[image.registries.\"a.io\"]\nplain_http = true\n"
                                            "[vm]\nmax_vcpus = 0\n");
        _cleanup_config_ cc_config *c = cc_config_new_default();
        cc_error *err = NULL;
        assert_int_equal(cc_config_load_file(c, p, &err), -EINVAL);
        assert_non_null(strstr(err->msg, ":6:13: vm.max_vcpus: 0 is out of range 1..255"));
        cc_error_free(err);
        assert_int_equal(c->server.workers, 16);
        assert_int_equal(c->image.n_registries, 0);
}

static void test_dropins(void **state)
{
        _cleanup_free_ char *main_path = write_file("main.toml",
                "[server]\nworkers = 2\n[log]\nlevel = \"debug\"\n"
                "[image.registries.\"docker.io\"]\nmirrors = [\"https://m1\"]\n");
        /* Lexical, not numeric: "10-..." sorts before "2-...", so 2-b wins. */
        _cleanup_free_ char *a = write_file("cocoon.d/10-a.toml",
                "[server]\nworkers = 3\n[image.registries.\"docker.io\"]\nmirrors = [\"https://m2\", \"https://m3\"]\n"
                "[image.registries.\"quay.io\"]\nplain_http = true\n"
                "[runtime.handlers.fast]\nmode = \"host\"\n");
        _cleanup_free_ char *b = write_file("cocoon.d/2-b.toml",
                "[server]\nworkers = 4\n[image.registries.\"docker.io\"]\ninsecure_skip_verify = true\n"
                "[runtime]\ndefault_handler = \"fast\"\n");
        _cleanup_free_ char *h = write_file("cocoon.d/.hidden.toml", "garbage garbage\n");
        _cleanup_free_ char *t = write_file("cocoon.d/notes.txt", "garbage garbage\n");
        _cleanup_free_ char *dir = NULL;
        assert_true(asprintf(&dir, "%s/cocoon.d", tmpdir) > 0);

        _cleanup_config_ cc_config *c = NULL;
        cc_error *err = NULL;
        int r = cc_config_load(&c, main_path, dir, true, &err);
        if (r < 0)
                fail_msg("%s", err->msg);
        assert_int_equal(c->server.workers, 4);
        assert_int_equal(c->log.level, CC_LOG_DEBUG); /* untouched by drop-ins */
        assert_int_equal(c->image.n_registries, 2);
        assert_string_equal(c->image.registries[0].host, "docker.io");
        assert_string_equal(c->image.registries[1].host, "quay.io");
        const cc_config_registry *d = cc_config_find_registry(c, "docker.io");
        assert_string_equal(d->mirrors[0], "https://m2"); /* arrays replace */
        assert_string_equal(d->mirrors[1], "https://m3");
        assert_null(d->mirrors[2]);
        assert_true(d->insecure_skip_verify); /* merged key by key */
        assert_false(d->plain_http);
        assert_true(cc_config_find_registry(c, "quay.io")->plain_http);
        assert_string_equal(c->runtime.default_handler, "fast");
        assert_int_equal(cc_config_find_handler(c, "fast")->mode, CC_CONFIG_MODE_HOST);

        /* An error in a drop-in names the drop-in. */
        _cleanup_free_ char *bad = write_file("cocoon.d/30-bad.toml", "\n[vm]\nnope = true\n");
        cc_config *c2 = (cc_config *)0x1;
        assert_int_equal(cc_config_load(&c2, main_path, dir, true, &err), -EINVAL);
        assert_ptr_equal(c2, (cc_config *)0x1);
        _cleanup_free_ char *want = NULL;
        assert_true(asprintf(&want, "%s:3:1: unknown key 'vm.nope'", bad) > 0);
        assert_string_equal(err->msg, want);
        cc_error_free(err);
        unlink(bad);
}

static void test_missing_files(void **state)
{
        _cleanup_free_ char *missing = NULL, *nodir = NULL;
        assert_true(asprintf(&missing, "%s/nonexistent.toml", tmpdir) > 0);
        assert_true(asprintf(&nodir, "%s/nonexistent.d", tmpdir) > 0);
        cc_config *c = NULL;
        cc_error *err = NULL;
        assert_int_equal(cc_config_load(&c, missing, nodir, false, &err), 0);
        assert_null(err);
        _cleanup_free_ char *d1 = cc_config_dump(c);
        cc_config *def = cc_config_new_default();
        _cleanup_free_ char *d2 = cc_config_dump(def);
        assert_string_equal(d1, d2);
        cc_config_free(def);
        cc_config_free(c);

        c = NULL;
        assert_int_equal(cc_config_load(&c, missing, NULL, true, &err), -ENOENT);
        assert_null(c);
        assert_non_null(strstr(err->msg, "nonexistent.toml"));
        cc_error_free(err);

        assert_int_equal(cc_config_load(&c, NULL, NULL, false, &err), 0);
        cc_config_free(c);
}

static void test_cross_checks(void **state)
{
        _cleanup_free_ char *p = write_file("x.toml", "[vm]\ndefault_vcpus = 4\nmax_vcpus = 2\n");
        cc_config *c = NULL;
        cc_error *err = NULL;
        assert_int_equal(cc_config_load(&c, p, NULL, true, &err), -EINVAL);
        assert_string_equal(err->msg, "vm.default_vcpus (4) exceeds vm.max_vcpus (2)");
        cc_error_free(err);
        err = NULL;

        _cleanup_free_ char *q = write_file("y.toml", "[vm]\ndefault_memory_mib = 2048\nmax_memory_mib = 1024\n");
        assert_int_equal(cc_config_load(&c, q, NULL, true, &err), -EINVAL);
        assert_string_equal(err->msg, "vm.default_memory_mib (2048) exceeds vm.max_memory_mib (1024)");
        cc_error_free(err);
        err = NULL;

        _cleanup_free_ char *r = write_file("z.toml", "[runtime]\ndefault_handler = \"ghost\"\n");
        assert_int_equal(cc_config_load(&c, r, NULL, true, &err), -EINVAL);
        assert_string_equal(err->msg, "runtime.default_handler \"ghost\" is not defined in [runtime.handlers]");
        cc_error_free(err);
        assert_null(c);

        /* Per-file loading does not run the cross checks (a later drop-in may fix them). */
        _cleanup_config_ cc_config *d = cc_config_new_default();
        assert_int_equal(cc_config_load_file(d, r, NULL), 0);
        assert_true(cc_config_validate(d, NULL) < 0);
}

static void test_dump_roundtrip(void **state)
{
        _cleanup_free_ char *p = write_file("rt.toml",
                "[server]\nsocket_group = \"1000\"\nworkers = 1\n"
                "[vm]\nkernel_params = \"a=\\\"b c\\\" d\\\\e\"\naccel = \"kvm\"\n"
                "[cni]\nbin_dirs = [\"/x y\", \"/\\u00e9\"]\n"
                "[image.registries.\"reg.example.com:5000\"]\nmirrors = [\"https://m/a\"]\n"
                "[image.registries.gcr]\nplain_http = true\n"
                "[runtime]\ndefault_handler = \"h.1\"\n"
                "[runtime.handlers.\"h.1\"]\nmode = \"host\"\n"
                "[runtime.handlers.vm2]\n");
        _cleanup_config_ cc_config *c = NULL;
        cc_error *err = NULL;
        if (cc_config_load(&c, p, NULL, true, &err) < 0)
                fail_msg("%s", err->msg);
        _cleanup_free_ char *dump = cc_config_dump(c);
        assert_non_null(strstr(dump, "[image.registries.\"reg.example.com:5000\"]\n"));
        assert_non_null(strstr(dump, "[image.registries.gcr]\n"));
        assert_non_null(strstr(dump, "kernel_params = \"a=\\\"b c\\\" d\\\\e\"\n"));

        _cleanup_free_ char *q = write_file("rt-dump.toml", dump);
        _cleanup_config_ cc_config *c2 = NULL;
        if (cc_config_load(&c2, q, NULL, true, &err) < 0)
                fail_msg("%s", err->msg);
        _cleanup_free_ char *dump2 = cc_config_dump(c2);
        assert_string_equal(dump, dump2);
        assert_string_equal(c2->cni.bin_dirs[1], "/\xc3\xa9");
        assert_int_equal(c2->runtime.n_handlers, 2);
        assert_int_equal(cc_config_find_handler(c2, "vm2")->mode, CC_CONFIG_MODE_VM);
}

static void test_size_limit(void **state)
{
        char *big = malloc(CC_TOML_MAX_SIZE + 2);
        assert_non_null(big);
        memset(big, '\n', CC_TOML_MAX_SIZE + 1);
        big[CC_TOML_MAX_SIZE + 1] = 0;
        _cleanup_free_ char *p = write_file("big.toml", big);
        free(big);
        _cleanup_config_ cc_config *c = cc_config_new_default();
        cc_error *err = NULL;
        assert_int_equal(cc_config_load_file(c, p, &err), -EFBIG);
        _cleanup_free_ char *want = NULL;
        assert_true(asprintf(&want, "%s: larger than 1048576 bytes", p) > 0);
        assert_string_equal(err->msg, want);
        cc_error_free(err);
}

/* conf/cocoon.toml with every "# key = value" line uncommented (and, when
 * examples, every "#   ..." example line too). */
static char *uncomment_doc(const char *doc, bool examples)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        assert_non_null(f);
        const char *line = doc;
        while (*line) {
                const char *nl = strchrnul(line, '\n');
                size_t n = (size_t)(nl - line);
                size_t k = 2;
                while (k < n && (line[k] == '_' || (line[k] >= 'a' && line[k] <= 'z') || (line[k] >= '0' && line[k] <= '9')))
                        k++;
                bool is_default = n > 2 && line[0] == '#' && line[1] == ' ' && k > 2 && n >= k + 3 &&
                                  memcmp(line + k, " = ", 3) == 0;
                bool is_example = examples && n > 4 && memcmp(line, "#   ", 4) == 0;
                if (is_default)
                        fprintf(f, "%.*s\n", (int)(n - 2), line + 2);
                else if (is_example)
                        fprintf(f, "%.*s\n", (int)(n - 4), line + 4);
                else
                        fprintf(f, "%.*s\n", (int)n, line);
                line = *nl ? nl + 1 : nl;
        }
        assert_int_equal(fclose(f), 0);
        return out;
}

/* [paths] state: 17 bytes is the most that leaves room for
 * <state>/sandboxes/<64-char id>/virtiofsd.sock in a sun_path. */
static void test_state_path_limit(void **state)
{
        _cleanup_free_ char *ok = write_file("state-ok.toml", "[paths]\nstate = \"/run/cocoon-abcde\"\n");
        _cleanup_config_ cc_config *c = NULL;
        cc_error *err = NULL;
        if (cc_config_load(&c, ok, NULL, true, &err) < 0)
                fail_msg("17-byte state: %s", err->msg);
        assert_string_equal(c->paths.state, "/run/cocoon-abcde");
        assert_true(strlen(c->paths.state) + strlen("/sandboxes/") + 64 + strlen("/virtiofsd.sock") == 107);
        _cleanup_free_ char *bad = write_file("state-bad.toml", "[paths]\nstate = \"/run/cocoon-abcdef\"\n");
        _cleanup_config_ cc_config *c2 = NULL;
        assert_int_equal(cc_config_load(&c2, bad, NULL, true, &err), -EINVAL);
        assert_null(c2);
        assert_non_null(strstr(err->msg, "paths.state"));
        assert_non_null(strstr(err->msg, "at most 17 bytes"));
        cc_error_free(err);
}

static void test_doc_matches_defaults(void **state)
{
        _cleanup_free_ char *doc = read_all(TOP_SRCDIR "/conf/cocoon.toml");
        _cleanup_free_ char *uncommented = uncomment_doc(doc, false);
        _cleanup_free_ char *p = write_file("doc.toml", uncommented);

        /* Every default shown in the doc is the real default. */
        _cleanup_config_ cc_config *c = cc_config_new_default();
        cc_error *err = NULL;
        if (cc_config_load_file(c, p, &err) < 0)
                fail_msg("conf/cocoon.toml uncommented: %s", err->msg);
        _cleanup_config_ cc_config *def = cc_config_new_default();
        /* Installed paths follow configure's --prefix (the doc shows the
         * default /usr/local ones; make distcheck uses another prefix). */
        free(c->runtime.host_agent);
        c->runtime.host_agent = strdup(def->runtime.host_agent);
        free(c->runtime.seccomp_dir);
        c->runtime.seccomp_dir = strdup(def->runtime.seccomp_dir);
        free(c->vm.kernel);
        c->vm.kernel = strdup(def->vm.kernel);
        free(c->vm.initrd);
        c->vm.initrd = strdup(def->vm.initrd);
        _cleanup_free_ char *d1 = cc_config_dump(c);
        _cleanup_free_ char *d2 = cc_config_dump(def);
        assert_string_equal(d1, d2);

        /* Every key of the schema is documented. */
        _cleanup_toml_ cc_toml_value *t = cc_toml_parse(uncommented, strlen(uncommented), "doc", &err);
        assert_non_null(t);
        const char *key, *kdoc;
        for (size_t i = 0; cc_config_schema_key(i, &key, &kdoc); i++) {
                if (strchr(key, '*')) {
                        /* Dynamic tables: documented in prose and in an example. */
                        const char *last = strrchr(key, '.') + 1;
                        char prefix[64];
                        snprintf(prefix, sizeof(prefix), "#   [%.*s.", (int)(strchr(key, '*') - key - 1), key);
                        if (!strstr(doc, prefix) || !strstr(doc, last))
                                fail_msg("conf/cocoon.toml does not document %s", key);
                        continue;
                }
                char sect[32];
                const char *dot = strchr(key, '.');
                snprintf(sect, sizeof(sect), "%.*s", (int)(dot - key), key);
                if (!cc_toml_get(cc_toml_get(t, sect), dot + 1))
                        fail_msg("conf/cocoon.toml does not document %s as '# %s = ...' under [%s]", key, dot + 1,
                                 sect);
        }

        /* The examples are valid too. */
        _cleanup_free_ char *with_examples = uncomment_doc(doc, true);
        _cleanup_free_ char *p2 = write_file("doc-examples.toml", with_examples);
        _cleanup_config_ cc_config *c2 = NULL;
        if (cc_config_load(&c2, p2, NULL, true, &err) < 0)
                fail_msg("conf/cocoon.toml examples: %s", err->msg);
        assert_true(c2->image.n_registries >= 1);
        assert_true(c2->runtime.n_handlers >= 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_load_valid),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_failed_file_is_atomic),
                cmocka_unit_test(test_dropins),
                cmocka_unit_test(test_missing_files),
                cmocka_unit_test(test_cross_checks),
                cmocka_unit_test(test_dump_roundtrip),
                cmocka_unit_test(test_size_limit),
                cmocka_unit_test(test_state_path_limit),
                cmocka_unit_test(test_doc_matches_defaults),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
