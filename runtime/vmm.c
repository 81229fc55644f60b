/* SPDX-License-Identifier: Apache-2.0 */
/* The vmm_* wrappers over a backend's ops table, and host facts the backends
 * share (is KVM usable, the host TSC frequency). */
#include "runtime/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "runtime/vmm-proc.h"

#define OPS(v) (((vmm_base *)(v))->ops)

int vmm_create(const vmm_ops *ops, const vmm_config *c, vmm **ret, cc_error **ret_err)
{
        if (!ops || !ops->create)
                return cc_error_set(ret_err, -EOPNOTSUPP, "vmm: backend cannot create VMs");
        return ops->create(c, ret, ret_err);
}

const vmm_ops *vmm_get_ops(vmm *v) { return v ? OPS(v) : NULL; }

static int unsupported(vmm *v, const char *op, cc_error **ret_err)
{
        return cc_error_set(ret_err, -EOPNOTSUPP, "vmm %s: %s is not supported",
                            v && OPS(v) && OPS(v)->name ? OPS(v)->name : "?", op);
}

int vmm_add_device(vmm *v, const vmm_device *d, cc_error **ret_err)
{
        if (!v || !OPS(v)->add_device)
                return unsupported(v, "add_device", ret_err);
        return OPS(v)->add_device(v, d, ret_err);
}

int vmm_start(vmm *v, cc_error **ret_err)
{
        if (!v || !OPS(v)->start)
                return unsupported(v, "start", ret_err);
        return OPS(v)->start(v, ret_err);
}

int vmm_stop(vmm *v, int timeout_ms, cc_error **ret_err)
{
        if (!v || !OPS(v)->stop)
                return unsupported(v, "stop", ret_err);
        return OPS(v)->stop(v, timeout_ms, ret_err);
}

int vmm_pause(vmm *v, cc_error **ret_err)
{
        if (!v || !OPS(v)->pause)
                return unsupported(v, "pause", ret_err);
        return OPS(v)->pause(v, ret_err);
}

int vmm_resume(vmm *v, cc_error **ret_err)
{
        if (!v || !OPS(v)->resume)
                return unsupported(v, "resume", ret_err);
        return OPS(v)->resume(v, ret_err);
}

int vmm_agent_endpoint(vmm *v, vmm_endpoint *ret, cc_error **ret_err)
{
        if (!v || !OPS(v)->agent_endpoint)
                return unsupported(v, "agent_endpoint", ret_err);
        return OPS(v)->agent_endpoint(v, ret, ret_err);
}

int vmm_template_save(vmm *v, const char *state_path, cc_error **ret_err)
{
        if (!v || !OPS(v)->template_save)
                return unsupported(v, "template_save", ret_err);
        return OPS(v)->template_save(v, state_path, ret_err);
}

void vmm_free(vmm *v)
{
        if (v && OPS(v)->free)
                OPS(v)->free(v);
}

/* Does the host CPU offer hardware virtualization (vmx or svm in the first
 * "flags" line of /proc/cpuinfo)? */
static bool cpu_has_hw_virt(void)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
        if (!f)
                return false;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
                if (strncmp(line, "flags", 5) != 0)
                        continue;
                for (char *save = NULL, *w = strtok_r(line, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
                        if (strcmp(w, "vmx") == 0 || strcmp(w, "svm") == 0)
                                return true;
                return false;
        }
        return false;
}

/* /dev/kvm alone is not enough: a PVM host (kvm_pvm, a KVM that runs only
 * guests built as PVM guests, without vmx/svm) opens /dev/kvm and answers
 * KVM_GET_API_VERSION, but QEMU then aborts ("failed to set MSR 0x10a") or
 * the stock guest kernel never prints a line. Measured on such a host:
 * `-accel kvm -cpu host` asserts, `-cpu host,-arch-capabilities` hangs. */
bool vmm_kvm_usable(void)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return false;
        int api = ioctl(fd, KVM_GET_API_VERSION, 0);
        close(fd);
        return api == KVM_API_VERSION && cpu_has_hw_virt();
}

/* ---- host TSC frequency -------------------------------------------------- */

#define TSC_KHZ_MIN 100000ULL
#define TSC_KHZ_MAX 20000000ULL
#define KLOG_MAX (8u << 20)

static bool tsc_valid(uint64_t khz) { return khz >= TSC_KHZ_MIN && khz <= TSC_KHZ_MAX; }

/* "2096.037" (MHz) → 2096037 (kHz) without floating point; 0 if malformed. */
static uint64_t mhz_to_khz(const char *s, const char **ret_end)
{
        uint64_t whole = 0, frac = 0;
        int digits = 0, fdigits = 0;
        while (*s >= '0' && *s <= '9' && digits < 9) {
                whole = whole * 10 + (uint64_t)(*s++ - '0');
                digits++;
        }
        if (digits == 0 || (*s >= '0' && *s <= '9'))
                return 0;
        if (*s == '.') {
                s++;
                while (*s >= '0' && *s <= '9') {
                        if (fdigits < 4) {
                                frac = frac * 10 + (uint64_t)(*s - '0');
                                fdigits++;
                        }
                        s++;
                }
        }
        while (fdigits < 4) {
                frac *= 10;
                fdigits++;
        }
        if (ret_end)
                *ret_end = s;
        /* frac is in 1/10000 MHz = 1/10 kHz: round to the nearest kHz */
        return whole * 1000 + (frac + 5) / 10;
}

static uint64_t tsc_from_sysfs(void)
{
        _cleanup_free_ char *buf = NULL;
        if (cc_read_file("/sys/devices/system/cpu/cpu0/tsc_freq_khz", 64, &buf, NULL, NULL) < 0)
                return 0;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || end == buf || (*end && *end != '\n'))
                return 0;
        return v;
}

/* The host kernel's own calibration from its log: the last "Refined TSC
 * clocksource calibration: N MHz", else the last "Detected N MHz processor". */
static uint64_t tsc_khz_from_klog(const char *log, size_t len)
{
        static const char refined[] = "tsc: Refined TSC clocksource calibration: ";
        static const char detected[] = "tsc: Detected ";
        uint64_t r = 0, d = 0;
        const char *p = log, *end = log + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *le = nl ? nl : end;
                char line[256];
                size_t n = CC_MIN((size_t)(le - p), sizeof(line) - 1);
                memcpy(line, p, n);
                line[n] = 0;
                const char *m, *after = NULL;
                uint64_t v;
                if ((m = strstr(line, refined)) &&
                    (v = mhz_to_khz(m + sizeof(refined) - 1, &after)) && strncmp(after, " MHz", 4) == 0)
                        r = v;
                else if ((m = strstr(line, detected)) &&
                         (v = mhz_to_khz(m + sizeof(detected) - 1, &after)) &&
                         strncmp(after, " MHz processor", 14) == 0)
                        d = v;
                p = le + 1;
        }
        if (tsc_valid(r))
                return r;
        return tsc_valid(d) ? d : 0;
}

static uint64_t tsc_from_klog(void)
{
        int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
        if (size <= 0)
                return 0;
        if ((unsigned)size > KLOG_MAX)
                size = (int)KLOG_MAX;
        _cleanup_free_ char *buf = malloc((size_t)size);
        if (!buf)
                return 0;
        int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
        if (n <= 0)
                return 0;
        return tsc_khz_from_klog(buf, (size_t)n);
}

/* /proc/cpuinfo "cpu MHz", trusted only with constant_tsc. */
static uint64_t tsc_khz_from_cpuinfo(const char *info, size_t len)
{
        bool constant = false;
        uint64_t khz = 0;
        const char *p = info, *end = info + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *le = nl ? nl : end;
                char line[4096];
                size_t n = CC_MIN((size_t)(le - p), sizeof(line) - 1);
                memcpy(line, p, n);
                line[n] = 0;
                if (!constant && strncmp(line, "flags", 5) == 0) {
                        /* whole-word match */
                        for (char *f = strstr(line, "constant_tsc"); f; f = strstr(f + 1, "constant_tsc")) {
                                char after = f[12];
                                if ((f[-1] == ' ' || f[-1] == '\t') && (after == 0 || after == ' ')) {
                                        constant = true;
                                        break;
                                }
                        }
                } else if (khz == 0 && strncmp(line, "cpu MHz", 7) == 0) {
                        const char *c = strchr(line, ':');
                        if (c) {
                                c++;
                                while (*c == ' ' || *c == '\t')
                                        c++;
                                khz = mhz_to_khz(c, NULL);
                        }
                }
                p = le + 1;
        }
        return constant && tsc_valid(khz) ? khz : 0;
}

static uint64_t tsc_from_cpuinfo(void)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        /* /proc files report size 0: cc_read_file reads until EOF, bounded */
        if (cc_read_file("/proc/cpuinfo", 4u << 20, &buf, &len, NULL) < 0)
                return 0;
        return tsc_khz_from_cpuinfo(buf, len);
}

static uint64_t tsc_khz_cached;
static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;

static void tsc_detect(void)
{
        uint64_t k = tsc_from_sysfs();
        if (!tsc_valid(k))
                k = tsc_from_klog();
        if (!tsc_valid(k))
                k = tsc_from_cpuinfo();
        tsc_khz_cached = tsc_valid(k) ? k : 0;
}

uint64_t vmm_host_tsc_khz(void)
{
        pthread_once(&tsc_once, tsc_detect);
        return tsc_khz_cached;
}

/* ---- guest kernel features ------------------------------------------------------ */

static struct {
        pthread_mutex_t mu;
        char path[PATH_MAX];
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime;
        unsigned features;
        bool valid;
} kfeat = { .mu = PTHREAD_MUTEX_INITIALIZER };

static unsigned kernel_scan(int fd, size_t size)
{
        /* parameter names as the kernel stores them: NUL-terminated strings
         * (a built-in module's parameters carry the module name) */
        static const struct { const char *name; size_t len; unsigned bit; } want[] = {
                { "virtio_mmio.device", sizeof("virtio_mmio.device"), VMM_KERNEL_MMIO_CMDLINE },
                { "lapic_timer_khz", sizeof("lapic_timer_khz"), VMM_KERNEL_LAPIC_KHZ },
                { "keep_initmem", sizeof("keep_initmem"), VMM_KERNEL_KEEP_INITMEM },
                { "pcie_link_delay", sizeof("pcie_link_delay"), VMM_KERNEL_PCIE_LINK_DELAY },
        };
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
                return 0;
        unsigned f = 0;
        for (size_t i = 0; i < CC_ARRAY_SIZE(want); i++) {
                /* the string itself, preceded by a NUL (not a longer name's tail) */
                const char *p = m, *end = (const char *)m + size;
                while (p < end && (p = memmem(p, (size_t)(end - p), want[i].name, want[i].len))) {
                        if (p > (const char *)m && p[-1] == 0) {
                                f |= want[i].bit;
                                break;
                        }
                        p++;
                }
        }
        munmap(m, size);
        return f;
}

unsigned vmm_kernel_features(const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
            strlen(path) >= sizeof(kfeat.path))
                return 0;
        pthread_mutex_lock(&kfeat.mu);
        if (kfeat.valid && strcmp(kfeat.path, path) == 0 && kfeat.dev == st.st_dev && kfeat.ino == st.st_ino &&
            kfeat.size == st.st_size && kfeat.mtime.tv_sec == st.st_mtim.tv_sec &&
            kfeat.mtime.tv_nsec == st.st_mtim.tv_nsec) {
                unsigned f = kfeat.features;
                pthread_mutex_unlock(&kfeat.mu);
                return f;
        }
        unsigned f = kernel_scan(fd, (size_t)st.st_size);
        snprintf(kfeat.path, sizeof(kfeat.path), "%s", path);
        kfeat.dev = st.st_dev;
        kfeat.ino = st.st_ino;
        kfeat.size = st.st_size;
        kfeat.mtime = st.st_mtim;
        kfeat.features = f;
        kfeat.valid = true;
        pthread_mutex_unlock(&kfeat.mu);
        return f;
}

/* ---- process helpers (runtime/vmm-proc.h) ---------------------------------- */

int64_t vmm_mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vmm_watch_dir(const char *dir, cc_error **ret_err)
{
        int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (fd < 0)
                return cc_error_errno(ret_err, "inotify_init1");
        if (inotify_add_watch(fd, dir, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
                int r = cc_error_errno(ret_err, "watch '%s'", dir);
                close(fd);
                return r;
        }
        return fd;
}

int vmm_wait_file(int inotify_fd, const char *dir, const char *name, int pidfd, int timeout_ms,
                  cc_error **ret_err)
{
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int64_t deadline = vmm_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        for (;;) {
                /* drain the events first, then look: nothing created in
                 * between can be missed */
                char evbuf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
                while (read(inotify_fd, evbuf, sizeof(evbuf)) > 0)
                        ;
                if (access(path, F_OK) == 0)
                        return 0;
                struct pollfd pf[2] = { { inotify_fd, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
                int64_t left = deadline - vmm_mono_ms();
                if (left <= 0)
                        return cc_error_set(ret_err, -ETIMEDOUT, "'%s' did not appear within %d ms",
                                            path, timeout_ms);
                int r = poll(pf, pidfd >= 0 ? 2 : 1, (int)CC_MIN(left, INT32_MAX));
                if (r < 0 && errno != EINTR)
                        return cc_error_errno(ret_err, "poll");
                if (pidfd >= 0 && pf[1].revents) {
                        if (access(path, F_OK) == 0)
                                return 0;
                        return cc_error_set(ret_err, -ECHILD, "the process exited before creating '%s'",
                                            path);
                }
        }
}

int vmm_wait_exit(int pidfd, int timeout_ms)
{
        int64_t deadline = vmm_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        for (;;) {
                struct pollfd pf = { pidfd, POLLIN, 0 };
                int64_t left = deadline - vmm_mono_ms();
                int r = poll(&pf, 1, left > 0 ? (int)CC_MIN(left, INT32_MAX) : 0);
                if (r > 0)
                        return 0;
                if (r < 0 && errno == EINTR)
                        continue;
                if (left <= 0 || r < 0)
                        return -ETIMEDOUT;
        }
}

void vmm_proc_reap(const cc_proc *p)
{
        if (!p || p->pid <= 0)
                return;
        int status;
        while (waitpid(p->pid, &status, WNOHANG) < 0 && errno == EINTR)
                ;
}

static int send_signal(const cc_proc *p, int pidfd, int sig)
{
        if (pidfd >= 0)
                return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
        if (!cc_proc_alive(p))
                return -ESRCH;
        return kill(p->pid, sig) < 0 ? -errno : 0;
}

/* Waits until p is gone (or a zombie): 0, or -ETIMEDOUT. */
static int wait_gone_polling(const cc_proc *p, int timeout_ms, bool reap)
{
        int64_t deadline = vmm_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        for (;;) {
                if (reap)
                        vmm_proc_reap(p);
                if (!cc_proc_alive(p)) {
                        if (reap)
                                vmm_proc_reap(p); /* it may have turned zombie just now */
                        return 0;
                }
                if (vmm_mono_ms() >= deadline)
                        return -ETIMEDOUT;
                struct timespec ts = { 0, 10 * 1000000L };
                nanosleep(&ts, NULL);
        }
}

/* Fallback where no pidfd can be had (pidfd_open needs Linux 5.3, and some
 * sandboxes filter it): the only place that polls. */
static int terminate_without_pidfd(const cc_proc *p, int sig, int timeout_ms, bool reap)
{
        if (!cc_proc_alive(p)) {
                if (reap)
                        vmm_proc_reap(p);
                return 0;
        }
        if (sig > 0 && kill(p->pid, sig) < 0)
                timeout_ms = 0;
        if (wait_gone_polling(p, timeout_ms, reap) == 0)
                return 0;
        if (cc_proc_alive(p))
                (void)kill(p->pid, SIGKILL);
        return wait_gone_polling(p, 5000, reap);
}

int vmm_proc_terminate(const cc_proc *p, int pidfd, int sig, int timeout_ms, bool reap)
{
        _cleanup_close_ int own = -1;
        if (pidfd < 0 && cc_proc_alive(p)) {
                own = cc_proc_pidfd(p, NULL);
                pidfd = own;
        }
        if (pidfd < 0)
                return terminate_without_pidfd(p, sig, timeout_ms, reap);
        int r = 0;
        if (sig > 0 && send_signal(p, pidfd, sig) < 0)
                timeout_ms = 0; /* already gone (ESRCH) or not ours to signal */
        if (vmm_wait_exit(pidfd, timeout_ms) < 0) {
                (void)send_signal(p, pidfd, SIGKILL);
                r = vmm_wait_exit(pidfd, 5000);
        }
        if (reap)
                vmm_proc_reap(p);
        return r;
}

void vmm_log_tail(const char *path, char *buf, size_t max)
{
        if (max == 0)
                return;
        buf[0] = 0;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return;
        char tmp[2048];
        off_t size = lseek(fd, 0, SEEK_END);
        if (size < 0)
                return;
        off_t off = size > (off_t)sizeof(tmp) - 1 ? size - (off_t)sizeof(tmp) + 1 : 0;
        ssize_t n = pread(fd, tmp, sizeof(tmp) - 1, off);
        if (n <= 0)
                return;
        while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r' || tmp[n - 1] == ' '))
                n--;
        tmp[n] = 0;
        char *line = memrchr(tmp, '\n', (size_t)n);
        line = line ? line + 1 : tmp;
        size_t i = 0;
        for (; line[i] && i + 1 < max; i++)
                buf[i] = (line[i] >= 0x20 && line[i] < 0x7f) ? line[i] : '?';
        buf[i] = 0;
}

char *vmm_qemu_escape(const char *s)
{
        size_t n = strlen(s), commas = 0;
        for (size_t i = 0; i < n; i++)
                commas += s[i] == ',';
        char *out = malloc(n + commas + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                *o++ = s[i];
                if (s[i] == ',')
                        *o++ = ',';
        }
        *o = 0;
        return out;
}

int vmm_error_exited(cc_error **err, const char *who, const char *log_path, size_t tail_max)
{
        char tail[512];
        vmm_log_tail(log_path, tail, tail_max < sizeof(tail) ? tail_max : sizeof(tail));
        cc_error_free(*err);
        *err = NULL;
        return cc_error_set(err, -EIO, "%s exited during start: %s", who, tail[0] ? tail : "(no message)");
}

void vmm_save_header(json_object *o, int version, const char *backend, const char *id, const cc_proc *p,
                     const char *run_dir)
{
        json_object_object_add(o, "version", json_object_new_int(version));
        json_object_object_add(o, "backend", json_object_new_string(backend));
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "pid", json_object_new_int64(p->pid));
        json_object_object_add(o, "start_time", json_object_new_int64((int64_t)p->start_time));
        json_object_object_add(o, "run_dir", json_object_new_string(run_dir));
}

int vmm_load_header(json_object *saved, vmm_saved_header *ret, cc_error **ret_err)
{
        vmm_saved_header h = { 0 };
        int r;
        if (!saved || !json_object_is_type(saved, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "not an object");
        if ((r = cc_json_get_int64(saved, "version", false, &h.version, ret_err)) < 0 ||
            (r = cc_json_get_string(saved, "backend", false, &h.backend, ret_err)) < 0 ||
            (r = cc_json_get_string(saved, "id", false, &h.id, ret_err)) < 0 ||
            (r = cc_json_get_int64(saved, "pid", false, &h.pid, ret_err)) < 0 ||
            (r = cc_json_get_int64(saved, "start_time", false, &h.start_time, ret_err)) < 0 ||
            (r = cc_json_get_string(saved, "run_dir", false, &h.run_dir, ret_err)) < 0)
                return r;
        *ret = h;
        return 0;
}
