/* SPDX-License-Identifier: Apache-2.0 */
/* User and group lookup in a container rootfs's /etc/passwd and /etc/group.
 * The files are opened with openat2(RESOLVE_IN_ROOT), so symlinks in a
 * hostile image cannot point outside the rootfs; lines and files are
 * bounded. The agent resolves a container's user in its rootfs; cocoond
 * does it on the host for a VM pod's containers, whose rootfs it mounted. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/user.h"

#include "common/cleanup.h"

#define USER_FILE_MAX_LINES 100000

static FILE *open_in_root(const char *rootfs, const char *rel)
{
        _cleanup_close_ int rfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rfd < 0)
                return NULL;
        /* O_NONBLOCK: a FIFO in the image must not block the open; only a
         * regular file is read (a device or FIFO counts as missing) */
        struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
        int fd = (int)syscall(SYS_openat2, rfd, rel, &how, sizeof(how));
        if (fd < 0)
                return NULL;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return NULL;
        }
        FILE *f = fdopen(fd, "re");
        if (!f)
                close(fd);
        return f;
}

static bool parse_num(const char *s, unsigned long *ret)
{
        if (!*s)
                return false;
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || *end || v > 0xfffffffeUL || *s == '-')
                return false;
        *ret = v;
        return true;
}

/* Splits a colon separated line into at most n fields. */
static size_t split(char *line, char **f, size_t n)
{
        size_t i = 0;
        line[strcspn(line, "\n")] = 0;
        f[i++] = line;
        for (char *p = line; *p && i < n; p++)
                if (*p == ':') {
                        *p = 0;
                        f[i++] = p + 1;
                }
        return i;
}

/* gid of a group name in the rootfs's /etc/group. */
static int group_gid(const char *rootfs, const char *group, gid_t *ret, cc_error **ret_err)
{
        char line[4096];
        _cleanup_fclose_ FILE *gr = open_in_root(rootfs, "etc/group");
        for (int n = 0; gr && n < USER_FILE_MAX_LINES && fgets(line, sizeof(line), gr); n++) {
                char *f[4];
                unsigned long g;
                if (split(line, f, 4) >= 3 && strcmp(f[0], group) == 0 && parse_num(f[2], &g)) {
                        *ret = (gid_t)g;
                        return 0;
                }
        }
        return cc_error_set(ret_err, -EINVAL, "group '%.64s' not found in the rootfs's /etc/group", group);
}

/* spec_name: "user", "uid", "user:group" or "uid:group" (the OCI image
 * config's User forms); an explicit group replaces the primary gid from
 * /etc/passwd. */
int cc_user_resolve(const char *rootfs, const char *spec_name, uid_t uid_hint, uid_t *ret_uid, gid_t *ret_gid,
                    gid_t *groups, size_t max_groups, size_t *n_groups, cc_error **ret_err)
{
        char namebuf[512];
        if (spec_name && strlen(spec_name) >= sizeof(namebuf))
                return cc_error_set(ret_err, -EINVAL, "user name too long");
        snprintf(namebuf, sizeof(namebuf), "%s", spec_name ? spec_name : "");
        char *group = strchr(namebuf, ':');
        if (group)
                *group++ = 0;
        const char *name = namebuf;
        gid_t group_id = 0;
        if (group) {
                unsigned long g;
                if (!*group)
                        return cc_error_set(ret_err, -EINVAL, "user '%.64s': empty group", spec_name);
                if (parse_num(group, &g))
                        group_id = (gid_t)g;
                else if (group_gid(rootfs, group, &group_id, ret_err) < 0)
                        return -EINVAL;
        }
        unsigned long num;
        bool by_name = name && *name && !parse_num(name, &num);
        uid_t uid = by_name ? (uid_t)-1 : (name && *name ? (uid_t)num : uid_hint);
        gid_t gid = 0;
        char uname[256] = "";
        bool found = false;
        char line[4096];

        _cleanup_fclose_ FILE *pw = open_in_root(rootfs, "etc/passwd");
        for (int n = 0; pw && n < USER_FILE_MAX_LINES && fgets(line, sizeof(line), pw); n++) {
                char *f[7];
                if (split(line, f, 7) < 4)
                        continue;
                unsigned long u, g;
                if (!parse_num(f[2], &u) || !parse_num(f[3], &g))
                        continue;
                if (by_name ? strcmp(f[0], name) == 0 : (uid_t)u == uid) {
                        uid = (uid_t)u;
                        gid = (gid_t)g;
                        snprintf(uname, sizeof(uname), "%s", f[0]);
                        found = true;
                        break;
                }
        }
        if (by_name && !found)
                return cc_error_set(ret_err, -EINVAL, "user '%.64s' not found in the rootfs's /etc/passwd",
                                    name);
        if (group)
                gid = group_id;
        if (!found) { /* numeric uid without a passwd entry: gid 0 (or the group), no groups */
                *ret_uid = uid;
                *ret_gid = gid;
                return 0;
        }
        _cleanup_fclose_ FILE *gr = open_in_root(rootfs, "etc/group");
        for (int n = 0; gr && n < USER_FILE_MAX_LINES && fgets(line, sizeof(line), gr); n++) {
                char *f[4];
                if (split(line, f, 4) < 4)
                        continue;
                unsigned long g;
                if (!parse_num(f[2], &g) || (gid_t)g == gid)
                        continue;
                for (char *save = NULL, *m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
                        if (strcmp(m, uname) == 0 && *n_groups < max_groups) {
                                groups[(*n_groups)++] = (gid_t)g;
                                break;
                        }
        }
        *ret_uid = uid;
        *ret_gid = gid;
        return 0;
}
