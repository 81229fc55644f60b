/* SPDX-License-Identifier: Apache-2.0 */
/* Guest PID 1 duties: the base mounts, kernel modules from the initrd's
 * load order, the kernel command line, a debug console, storages (the
 * virtio-fs share), and power-off. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/netlink.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/thread.h"

static int mount_one(const char *src, const char *dst, const char *type, unsigned long flags,
                     const char *data, cc_error **ret_err)
{
        mkdir(dst, 0755);
        if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
                return cc_error_errno(ret_err, "mount %s on %s", type, dst);
        return 0;
}

static void load_module(const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                log_warn("module %s: %s", path, strerror(errno));
                return;
        }
        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
                log_warn("module %s: %s", path, strerror(errno));
}

/* Modules are loaded in two phases: the prefix of the load order that ends
 * with virtio_console (the host channel cocoon uses) at once, the rest
 * (vsock, virtio-fs, overlay, virtio-net...) on a thread while the agent
 * already answers the host; the channel loop picks vsock up once its
 * transport is in. The RPCs that need the late modules call
 * agent_modules_wait() first. */
static pthread_mutex_t modules_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t modules_cond = PTHREAD_COND_INITIALIZER;
static bool modules_pending;

typedef struct module_list {
        char **v;
        size_t n, next;
} module_list;

static void module_list_free(module_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        free(l);
}

static void *late_modules_main(void *arg)
{
        module_list *l = arg;
        /* Idle priority: with one vCPU these loads would otherwise compete
         * with the kernel work that announces the virtio-serial port (the
         * control queue's work item) and with the agent answering its first
         * requests. The modules still load whenever nothing else runs. */
        struct sched_param sp = { 0 };
        int r = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
        if (r != 0)
                log_debug("late modules: SCHED_IDLE: %s", strerror(r));
        for (size_t i = l->next; i < l->n; i++)
                load_module(l->v[i]);
        module_list_free(l);
        log_debug("modules loaded");
        pthread_mutex_lock(&modules_mu);
        modules_pending = false;
        pthread_cond_broadcast(&modules_cond);
        pthread_mutex_unlock(&modules_mu);
        return NULL;
}

void agent_modules_wait(void)
{
        pthread_mutex_lock(&modules_mu);
        while (modules_pending)
                pthread_cond_wait(&modules_cond, &modules_mu);
        pthread_mutex_unlock(&modules_mu);
}

static void load_modules(void)
{
        _cleanup_fclose_ FILE *f = fopen("/lib/modules/load-order", "re");
        if (!f)
                return;
        module_list *l = calloc(1, sizeof(*l));
        if (!l || !(l->v = calloc(1024, sizeof(char *)))) {
                free(l);
                return;
        }
        char line[PATH_MAX];
        size_t split = 0;
        while (l->n < 1024 && fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = 0;
                if (line[0] != '/')
                        continue;
                if (!(l->v[l->n] = strdup(line)))
                        break;
                const char *base = strrchr(line, '/') + 1;
                l->n++;
                if (strcmp(base, "virtio_console.ko") == 0)
                        split = l->n;
        }
        if (split == 0) /* no channel driver in the list: all at once */
                split = l->n;
        for (l->next = 0; l->next < split; l->next++)
                load_module(l->v[l->next]);
        if (l->next == l->n) {
                module_list_free(l);
                log_debug("modules loaded");
                return;
        }
        modules_pending = true;
        if (cc_thread_start_detached(late_modules_main, l, 64 * 1024) < 0)
                late_modules_main(l); /* no thread: load them here */
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

/* The kernel refuses pivot_root(2) while the caller's root is the initramfs
 * (a mount without a parent), and every container's mount namespace is a
 * copy of ours. So the agent first moves into a bind mount of the initramfs
 * stacked on "/": the same files, but a root mount with a parent. */
static int leave_initramfs(cc_error **ret_err)
{
        static const char tmp[] = "/.cocoon-root";
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
                return cc_error_errno(ret_err, "mkdir %s", tmp);
        if (mount("/", tmp, NULL, MS_BIND | MS_REC, NULL) < 0)
                return cc_error_errno(ret_err, "bind / on %s", tmp);
        if (chdir(tmp) < 0 || mount(tmp, "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
                return cc_error_errno(ret_err, "move the root off the initramfs");
        rmdir(tmp);
        return 0;
}

int agent_init_pid1(cc_error **ret_err)
{
        if (leave_initramfs(ret_err) < 0)
                return -1;
        if (mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, ret_err) < 0 ||
            mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, ret_err) < 0 ||
            mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", ret_err) < 0 ||
            mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620",
                      ret_err) < 0 ||
            mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", ret_err) < 0 ||
            mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", ret_err) < 0 ||
            mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", ret_err) < 0)
                return -1;
        /* favordynmods: moving a process into a cgroup (every container
         * start and exec) or enabling controllers otherwise waits for an RCU
         * grace period, 10-15 ms each under TCG; in exchange fork and exit
         * take a slower lock path, which costs nothing measurable here.
         * Kernels before 6.0 lack the option. */
        mkdir("/sys/fs/cgroup", 0755);
        if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "nsdelegate,favordynmods") < 0 &&
            mount_one("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate",
                      ret_err) < 0)
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
        /* The pod's loopback: servers bound to 127.0.0.1 and port forwarding
         * need it; nothing else brings it up in the guest. */
        if (agent_nl_link_set(1, NULL, 0, true) < 0)
                log_warn("cannot bring up lo");
        load_modules();
        if (console)
                debug_console();
        return 0;
}

/* True if path is the root of a mount (its device differs from its
 * parent's, or it is the same inode as the parent: "/"). */
static bool is_mountpoint(const char *path)
{
        char parent[PATH_MAX + 4];
        struct stat a, b;
        snprintf(parent, sizeof(parent), "%s/..", path);
        if (stat(path, &a) < 0 || stat(parent, &b) < 0)
                return false;
        return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}

/* Kata's Storage: driver "virtio-fs" (source = the virtio-fs tag, fstype
 * "virtiofs" or empty), "ephemeral"/"local" (a tmpfs; source ignored).
 * mount_point is a guest path below /run/cocoon/ (AGENT_SHARED_DIR for
 * the pod's share). Mounting a mount point that is already mounted is a
 * no-op, so CreateSandbox and CreateContainer may both name the share.
 * Sets *ret_mounted when this call mounted something. */
int agent_mount_storage(const Grpc__Storage *s, bool *ret_mounted, cc_error **ret_err)
{
        if (ret_mounted)
                *ret_mounted = false;
        if (!agent.guest)
                return 0; /* host mode: the test prepared the files */
        agent_modules_wait(); /* fuse, virtiofs */
        const char *mp = s->mount_point;
        if (!mp || strncmp(mp, "/run/cocoon/", 12) != 0 || agent_validate_relpath("storage mount point", mp + 12,
                                                                                   ret_err) < 0 ||
            strlen(mp) > 512 || strncmp(mp, AGENT_RW_DIR, strlen(AGENT_RW_DIR)) == 0) {
                if (!*ret_err)
                        cc_error_set(ret_err, -EINVAL, "storage mount point '%.64s' outside /run/cocoon",
                                     mp ? mp : "");
                return -EINVAL;
        }
        if (!s->driver)
                return cc_error_set(ret_err, -EINVAL, "storage without a driver");
        const char *type;
        if (strcmp(s->driver, "virtio-fs") == 0) {
                type = "virtiofs";
                if (!s->source || !*s->source || strlen(s->source) > 36)
                        return cc_error_set(ret_err, -EINVAL, "virtio-fs storage: bad tag");
                if (s->fstype && *s->fstype && strcmp(s->fstype, "virtiofs") != 0)
                        return cc_error_set(ret_err, -EINVAL, "virtio-fs storage: fstype '%.32s'", s->fstype);
        } else if (strcmp(s->driver, "ephemeral") == 0 || strcmp(s->driver, "local") == 0) {
                type = "tmpfs";
        } else {
                return cc_error_set(ret_err, -EINVAL, "unsupported storage driver '%.32s'", s->driver);
        }
        char data[1024] = "";
        unsigned long flags = MS_NODEV;
        size_t dl = 0;
        if (s->n_options > 32)
                return cc_error_set(ret_err, -EINVAL, "too many storage options");
        for (size_t i = 0; i < s->n_options; i++) {
                const char *o = s->options[i];
                if (strcmp(o, "ro") == 0)
                        flags |= MS_RDONLY;
                else if (strcmp(o, "nodev") == 0)
                        flags |= MS_NODEV;
                else if (strcmp(o, "nosuid") == 0)
                        flags |= MS_NOSUID;
                else if (strcmp(o, "noexec") == 0)
                        flags |= MS_NOEXEC;
                else if (strcmp(o, "rw") == 0)
                        continue;
                else if (strchr(o, ',') || dl + strlen(o) + 2 >= sizeof(data))
                        return cc_error_set(ret_err, -EINVAL, "bad storage option '%.32s'", o);
                else
                        dl += snprintf(data + dl, sizeof(data) - dl, "%s%s", dl ? "," : "", o);
        }
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s", mp);
        for (char *p = path + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        mkdir(path, 0755);
                        *p = '/';
                }
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return cc_error_errno(ret_err, "mkdir %s", path);
        if (is_mountpoint(path))
                return 0;
        /* A VM started from a template gets its virtio-fs device hot-added
         * as it resumes: until the guest has probed it, the tag is unknown
         * (EINVAL). A booted VM has it from the start. */
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (mount(strcmp(type, "tmpfs") == 0 ? "tmpfs" : s->source, path, type, flags, dl ? data : NULL) < 0) {
                struct timespec t;
                clock_gettime(CLOCK_MONOTONIC, &t);
                int64_t waited_ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
                if (errno != EINVAL || strcmp(type, "virtiofs") != 0 || waited_ms >= AGENT_VIRTIOFS_WAIT_MS)
                        return cc_error_errno(ret_err, "mount %s (%s) on %s", s->source ? s->source : "", type,
                                              path);
                usleep(2000);
        }
        log_debug("storage %s (%s) mounted on %s", s->source ? s->source : "", type, path);
        if (ret_mounted)
                *ret_mounted = true;
        return 0;
}

void agent_init_poweroff(void)
{
        sync();
        /* Lazily detach what the containers and storages left mounted:
         * the host's virtiofsd then sees the FUSE session end. */
        umount2(AGENT_SHARED_DIR, MNT_DETACH);
        sync();
        /* Without ACPI (cocoond boots microvm with acpi=off when the kernel
         * finds its devices on the command line) the kernel cannot power
         * off and would only halt: reset instead, which ends QEMU as it runs
         * with -no-reboot. */
        reboot(access("/sys/firmware/acpi", F_OK) == 0 ? RB_POWER_OFF : RB_AUTOBOOT);
        _exit(0);
}
