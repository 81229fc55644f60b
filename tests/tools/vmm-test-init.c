/* SPDX-License-Identifier: Apache-2.0 */
/* vmm-test-init: a static /init for tests/integration/test_vmm.py. Not the
 * agent. It
 *   1. mounts devtmpfs, proc and sysfs; loads the modules listed in
 *      /lib/modules/load-order with finit_module(2);
 *   2. mounts the virtio-fs tag "cocoon" at /mnt (if there is one);
 *   3. opens the virtio-serial port named agent.0 (found through
 *      /sys/class/virtio-ports/<port>/name) and answers one command per line:
 *        ping            → "pong\n"
 *        cat <relpath>   → "data <n>\n" + n bytes of /mnt/<relpath>
 *                          (at most 64 KiB), or "err <message>\n"
 *        exists <path>   → "yes\n" or "no\n" (any guest path, e.g. /sys/block/vda)
 *        poweroff        → "bye\n", then powers off
 *      anything else     → "err unknown command\n"
 * It prints "VMM-TEST-INIT <event>" lines on the console (if there is one).
 * When the host side of the port hangs up, it waits for the next connection.
 *
 * Build: gcc -static -O2 -o vmm-test-init tests/tools/vmm-test-init.c */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "agent.0"
#define FS_TAG "cocoon"
#define MAX_LINE 1024
#define MAX_CAT (64 * 1024)

static int console = -1;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
        char buf[512];
        int n = snprintf(buf, sizeof(buf), "VMM-TEST-INIT ");
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (m < 0)
                return;
        n += m;
        if ((size_t)n > sizeof(buf) - 2)
                n = sizeof(buf) - 2;
        buf[n++] = '\n';
        if (console >= 0 && write(console, buf, (size_t)n) < 0) {
                /* nowhere else to report it */
        }
}

static void msleep(long ms)
{
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static __attribute__((noreturn)) void power_off(void)
{
        sync();
        reboot(RB_POWER_OFF);
        reboot(RB_AUTOBOOT);
        for (;;)
                pause();
}

static void load_modules(void)
{
        FILE *f = fopen("/lib/modules/load-order", "re");
        char line[512];
        int n = 0;
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = 0;
                if (line[0] != '/')
                        continue;
                int fd = open(line, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        say("open %s: %s", line, strerror(errno));
                        continue;
                }
                if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
                        say("finit_module %s: %s", line, strerror(errno));
                else
                        n++;
                close(fd);
        }
        fclose(f);
        say("modules %d", n);
}

/* /dev/<port> of the virtio-serial port named PORT_NAME; waits up to 10 s
 * (virtio_console adds ports asynchronously after probing). */
static int find_port(char *dev, size_t size)
{
        for (int tries = 0; tries < 1000; tries++) {
                DIR *d = opendir("/sys/class/virtio-ports");
                struct dirent *de;
                while (d && (de = readdir(d))) {
                        char path[300], name[80];
                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
                        int fd = open(path, O_RDONLY | O_CLOEXEC);
                        if (fd < 0)
                                continue;
                        ssize_t r = read(fd, name, sizeof(name) - 1);
                        close(fd);
                        if (r <= 0)
                                continue;
                        name[r] = 0;
                        name[strcspn(name, "\n")] = 0;
                        if (strcmp(name, PORT_NAME) == 0) {
                                snprintf(dev, size, "/dev/%s", de->d_name);
                                if (access(dev, F_OK) == 0) {
                                        closedir(d);
                                        return 0;
                                }
                        }
                }
                if (d)
                        closedir(d);
                msleep(10);
        }
        return -1;
}

static int write_all(int fd, const void *p, size_t len)
{
        const char *b = p;
        while (len > 0) {
                ssize_t w = write(fd, b, len);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                b += w;
                len -= (size_t)w;
        }
        return 0;
}

static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int fd, const char *fmt, ...)
{
        char buf[MAX_LINE];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t)n >= sizeof(buf))
                n = sizeof(buf) - 1;
        (void)write_all(fd, buf, (size_t)n);
}

static int safe_rel(const char *p)
{
        if (!*p || *p == '/')
                return 0;
        for (const char *s = p; *s;) {
                const char *e = strchr(s, '/');
                size_t n = e ? (size_t)(e - s) : strlen(s);
                if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                        return 0;
                s += n + (e ? 1 : 0);
        }
        return 1;
}

static void do_cat(int port, const char *rel)
{
        static char data[MAX_CAT];
        char path[MAX_LINE + 8];
        if (!safe_rel(rel)) {
                reply(port, "err unsafe path\n");
                return;
        }
        snprintf(path, sizeof(path), "/mnt/%s", rel);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                reply(port, "err %s\n", strerror(errno));
                return;
        }
        size_t len = 0;
        for (;;) {
                ssize_t r = read(fd, data + len, sizeof(data) - len);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        reply(port, "err %s\n", strerror(errno));
                        close(fd);
                        return;
                }
                if (r == 0 || (len += (size_t)r) == sizeof(data))
                        break;
        }
        close(fd);
        reply(port, "data %zu\n", len);
        (void)write_all(port, data, len);
}

int main(void)
{
        char dev[300], line[MAX_LINE];
        size_t len = 0;

        console = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
        say("start");
        if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
                say("mount /dev: %s", strerror(errno));
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                say("mount /proc: %s", strerror(errno));
        if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                say("mount /sys: %s", strerror(errno));
        load_modules();
        mkdir("/mnt", 0755);
        if (mount(FS_TAG, "/mnt", "virtiofs", 0, NULL) < 0)
                say("mount virtiofs %s: %s", FS_TAG, strerror(errno));
        else
                say("virtiofs mounted");

        if (find_port(dev, sizeof(dev)) < 0) {
                say("no virtio-serial port " PORT_NAME);
                power_off();
        }
        int port = open(dev, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (port < 0) {
                say("open %s: %s", dev, strerror(errno));
                power_off();
        }
        say("ready");
        for (;;) {
                char c;
                ssize_t r = read(port, &c, 1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        say("read: %s", strerror(errno));
                        msleep(20);
                        continue;
                }
                if (r == 0) {
                        /* the host side is not connected: a read on a
                         * virtio console port does not block then */
                        len = 0;
                        msleep(20);
                        continue;
                }
                if (c != '\n') {
                        if (len < sizeof(line) - 1)
                                line[len++] = c;
                        continue;
                }
                line[len] = 0;
                len = 0;
                if (strcmp(line, "ping") == 0)
                        reply(port, "pong\n");
                else if (strncmp(line, "cat ", 4) == 0)
                        do_cat(port, line + 4);
                else if (strncmp(line, "exists ", 7) == 0)
                        reply(port, access(line + 7, F_OK) == 0 ? "yes\n" : "no\n");
                else if (strcmp(line, "poweroff") == 0) {
                        reply(port, "bye\n");
                        power_off();
                } else
                        reply(port, "err unknown command\n");
        }
}
