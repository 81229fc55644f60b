/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the config file: the TOML subset reader and the
 * schema on top of it (a broken /etc/cocoon/cocoon.toml must give an error
 * with file:line:column, never a crash). Also checks the invariant that the
 * dump of any accepted config loads back to the same dump.
 * Build and run: tests/fuzz/run.sh BUILDDIR [SECONDS] */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/config.h"
#include "common/toml.h"

static int load_bytes(cc_config *cfg, const char *data, size_t len, cc_error **err)
{
        int fd = memfd_create("fuzz.toml", MFD_CLOEXEC);
        if (fd < 0)
                abort();
        if (len && write(fd, data, len) != (ssize_t)len)
                abort();
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        int r = cc_config_load_file(cfg, path, err);
        close(fd);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        cc_error *err = NULL;
        cc_toml_value *v = cc_toml_parse((const char *)data, size, "fuzz", &err);
        if (!v) {
                if (!err || !err->msg || strncmp(err->msg, "fuzz:", 5) != 0)
                        abort(); /* every error names file:line:col */
                cc_error_free(err);
                err = NULL;
        }
        cc_toml_free(v);

        cc_config *cfg = cc_config_new_default();
        if (load_bytes(cfg, (const char *)data, size, &err) == 0) {
                char *dump = cc_config_dump(cfg);
                cc_config *again = cc_config_new_default();
                if (load_bytes(again, dump, strlen(dump), &err) < 0)
                        abort(); /* our own dump must load */
                char *dump2 = cc_config_dump(again);
                if (strcmp(dump, dump2) != 0)
                        abort();
                free(dump);
                free(dump2);
                cc_config_free(again);
        }
        cc_error_free(err);
        cc_config_free(cfg);
        return 0;
}
