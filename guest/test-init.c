/* test-init: a minimal static PID 1 for smoke-testing the guest kernel and
 * initrd (tests/integration/guest-boot). Not the agent.
 *
 *   1. prints "COCOON-GUEST-READY <seconds since boot>" on /dev/console;
 *   2. mounts devtmpfs/proc/sysfs and loads the modules listed in
 *      /lib/modules/load-order with finit_module(2);
 *   3. prints "COCOON-MODULES-LOADED <n> <seconds>";
 *   4. finds the virtio-serial port named "agent.0", writes "HELLO\n" on it,
 *      reads one line L and answers "ECHO L\n", then prints "COCOON-ECHO-OK";
 *   5. powers off (reboot(RB_POWER_OFF)); on any failure prints
 *      "COCOON-GUEST-FAIL <what>" and powers off as well.
 *
 * Build: gcc -static -O2 -o test-init guest/test-init.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#define LINE_MAX_LEN 256

static int console_fd = -1;

static void say(const char *fmt, ...) {
        char buf[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t) n > sizeof(buf) - 2)
                n = sizeof(buf) - 2;
        buf[n++] = '\n';
        if (console_fd >= 0 && write(console_fd, buf, (size_t) n) < 0) {
                /* nothing else to tell it to */
        }
}

static double uptime(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
                return -1;
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static __attribute__((noreturn)) void power_off(void) {
        sync();
        reboot(RB_POWER_OFF);
        /* not reached unless poweroff failed: fall back to a reset */
        reboot(RB_AUTOBOOT);
        for (;;)
                pause();
}

static __attribute__((noreturn)) void fail(const char *what) {
        say("COCOON-GUEST-FAIL %s: %s", what, strerror(errno));
        power_off();
}

static int load_modules(void) {
        char line[512];
        FILE *f;
        int n = 0;

        f = fopen("/lib/modules/load-order", "re");
        if (!f)
                return errno == ENOENT ? 0 : -1;
        while (fgets(line, sizeof(line), f)) {
                size_t len = strcspn(line, "\n");
                int fd;

                line[len] = '\0';
                if (line[0] != '/')
                        continue;
                fd = open(line, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        say("COCOON-GUEST-FAIL open %s: %s", line, strerror(errno));
                        continue;
                }
                if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
                        say("COCOON-GUEST-FAIL finit_module %s: %s", line, strerror(errno));
                else
                        n++;
                close(fd);
        }
        fclose(f);
        return n;
}

/* Find /dev/vportNpM whose sysfs name is PORT_NAME; waits up to ~10 s for the
 * port to show up (virtio_console adds ports asynchronously after probing). */
static int find_port(char *dev, size_t size) {
        for (int tries = 0; tries < 1000; tries++) {
                DIR *d = opendir("/sys/class/virtio-ports");
                struct dirent *de;

                while (d && (de = readdir(d))) {
                        char path[300], name[64];
                        ssize_t r;
                        int fd;

                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
                        fd = open(path, O_RDONLY | O_CLOEXEC);
                        if (fd < 0)
                                continue;
                        r = read(fd, name, sizeof(name) - 1);
                        close(fd);
                        if (r <= 0)
                                continue;
                        name[r] = '\0';
                        name[strcspn(name, "\n")] = '\0';
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
                usleep(10000);
        }
        errno = ENOENT;
        return -1;
}

static int write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t w = write(fd, buf, len);

                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                buf += w;
                len -= (size_t) w;
        }
        return 0;
}

int main(void) {
        char dev[300], line[LINE_MAX_LEN], reply[LINE_MAX_LEN + 8];
        size_t len = 0;
        int fd, n;

        console_fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
        say("COCOON-GUEST-READY %.3f", uptime());

        if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
                fail("mount /dev");
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                fail("mount /proc");
        if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                fail("mount /sys");

        n = load_modules();
        if (n < 0)
                fail("read /lib/modules/load-order");
        say("COCOON-MODULES-LOADED %d %.3f", n, uptime());

        if (find_port(dev, sizeof(dev)) < 0)
                fail("find virtio-serial port " PORT_NAME);
        fd = open(dev, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                fail("open agent port");
        if (write_all(fd, "HELLO\n", 6) < 0)
                fail("write HELLO");
        while (len < sizeof(line) - 1) {
                ssize_t r = read(fd, line + len, 1);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        fail("read from agent port");
                if (line[len] == '\n')
                        break;
                len++;
        }
        line[len] = '\0';
        n = snprintf(reply, sizeof(reply), "ECHO %s\n", line);
        if (write_all(fd, reply, (size_t) n) < 0)
                fail("write ECHO");
        say("COCOON-ECHO-OK %.3f", uptime());
        close(fd);
        power_off();
}
