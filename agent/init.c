/* SPDX-License-Identifier: Apache-2.0 */
/* Guest PID 1 duties: the base mounts, kernel modules from the initrd's
 * load order, the kernel command line, a debug console, storages (the
 * virtio-fs share), and power-off. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"

static int mount_one(const char *src, const char *dst, const char *type, unsigned long flags,
                     const char *data, cc_error **ret_err)
{
        mkdir(dst, 0755);
        if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
                return cc_error_errno(ret_err, "mount %s on %s", type, dst);
        return 0;
}

static void load_modules(void)
{
        _cleanup_fclose_ FILE *f = fopen("/lib/modules/load-order", "re");
        if (!f)
                return;
        char line[PATH_MAX];
        for (int n = 0; n < 1024 && fgets(line, sizeof(line), f); n++) {
                line[strcspn(line, "\n")] = 0;
                if (line[0] != '/')
                        continue;
                _cleanup_close_ int fd = open(line, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        log_warn("module %s: %s", line, strerror(errno));
                        continue;
                }
                if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
                        log_warn("module %s: %s", line, strerror(errno));
        }
}

static void parse_cmdline(bool *debug_console)
{
        char buf[4096];
        _cleanup_close_ int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (n <= 0)
                return;
        buf[n] = 0;
        for (char *save = NULL, *w = strtok_r(buf, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
                if (strncmp(w, "cocoon.log=", 11) == 0) {
                        int l = cc_log_level_from_string(w + 11);
                        if (l >= 0)
                                cc_log_set_level(l);
                } else if (strcmp(w, "cocoon.debug_console=1") == 0) {
                        *debug_console = true;
                }
        }
}

static void debug_console(void)
{
        static const char *const ttys[] = { "/dev/hvc0", "/dev/ttyS0" };
        if (access("/bin/sh", X_OK) < 0)
                return;
        for (size_t i = 0; i < CC_ARRAY_SIZE(ttys); i++) {
                if (access(ttys[i], R_OK | W_OK) < 0)
                        continue;
                pid_t pid = fork();
                if (pid == 0) {
                        sigset_t none;
                        sigemptyset(&none);
                        sigprocmask(SIG_SETMASK, &none, NULL);
                        setsid();
                        int fd = open(ttys[i], O_RDWR);
                        if (fd < 0)
                                _exit(1);
                        dup2(fd, 0);
                        dup2(fd, 1);
                        dup2(fd, 2);
                        execl("/bin/sh", "sh", (char *)NULL);
                        _exit(127);
                }
                log_info("debug console on %s", ttys[i]);
                return;
        }
}

int agent_init_pid1(cc_error **ret_err)
{
        if (mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, ret_err) < 0 ||
            mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, ret_err) < 0 ||
            mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", ret_err) < 0 ||
            mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620",
                      ret_err) < 0 ||
            mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", ret_err) < 0 ||
            mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", ret_err) < 0 ||
            mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", ret_err) < 0 ||
            mount_one("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "nsdelegate", ret_err) < 0)
                return -1;
        /* /dev/ptmx of the devpts instance */
        if (access("/dev/ptmx", F_OK) < 0)
                symlink("pts/ptmx", "/dev/ptmx");
        int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                static const char *const c[] = { "+cpu", "+memory", "+pids", "+io" };
                for (size_t i = 0; i < CC_ARRAY_SIZE(c); i++)
                        if (write(fd, c[i], strlen(c[i])) < 0)
                                log_warn("cgroup controller %s: %s", c[i] + 1, strerror(errno));
                close(fd);
        }
        mkdir("/run/cocoon", 0755);
        mkdir(AGENT_SHARED_DIR, 0755);
        bool console = false;
        parse_cmdline(&console);
        load_modules();
        if (console)
                debug_console();
        return 0;
}

int agent_mount_storage(const Grpc__Storage *s, cc_error **ret_err)
{
        if (!agent.guest)
                return 0; /* host mode: the test prepared the files */
        const char *mp = s->mount_point;
        if (!mp || strncmp(mp, "/run/cocoon/", 12) != 0 || strstr(mp, "..") || strlen(mp) > 512)
                return cc_error_set(ret_err, -EINVAL, "storage mount point '%.64s' outside /run/cocoon",
                                    mp ? mp : "");
        if (!s->source || strlen(s->source) > 512)
                return cc_error_set(ret_err, -EINVAL, "bad storage source");
        const char *type;
        if (strcmp(s->driver, "virtio-fs") == 0)
                type = "virtiofs";
        else if (strcmp(s->driver, "ephemeral") == 0 || strcmp(s->driver, "local") == 0)
                type = "tmpfs";
        else
                return cc_error_set(ret_err, -EINVAL, "unsupported storage driver '%.32s'", s->driver);
        char data[1024] = "";
        unsigned long flags = 0;
        size_t dl = 0;
        for (size_t i = 0; i < s->n_options && i < 32; i++) {
                if (strcmp(s->options[i], "ro") == 0)
                        flags |= MS_RDONLY;
                else if (strcmp(s->options[i], "nodev") == 0)
                        flags |= MS_NODEV;
                else if (strcmp(s->options[i], "nosuid") == 0)
                        flags |= MS_NOSUID;
                else if (strcmp(s->options[i], "rw") != 0 && dl + strlen(s->options[i]) + 2 < sizeof(data))
                        dl += snprintf(data + dl, sizeof(data) - dl, "%s%s", dl ? "," : "", s->options[i]);
        }
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s", mp);
        for (char *p = path + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        mkdir(path, 0755);
                        *p = '/';
                }
        mkdir(path, 0755);
        if (mount(s->source, path, type, flags, dl ? data : NULL) < 0 && errno != EBUSY)
                return cc_error_errno(ret_err, "mount %s (%s) on %s", s->source, type, path);
        return 0;
}

void agent_init_poweroff(void)
{
        sync();
        /* Lazily detach what the containers and storages left mounted. */
        umount2(AGENT_SHARED_DIR, MNT_DETACH);
        sync();
        reboot(RB_POWER_OFF);
        _exit(0);
}
