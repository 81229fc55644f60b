/* SPDX-License-Identifier: Apache-2.0 */
/* The QEMU backend: one qemu-system-x86_64 per pod on the microvm machine,
 * booting the PVH vmlinux + initrd directly, virtio-mmio devices, QMP over a
 * unix socket in the run directory.
 *
 * QEMU is spawned in its own session (so it outlives cocoond; -daemonize
 * cannot be combined with -sandbox spawn=deny), with stdout/stderr in
 * <run_dir>/qemu.log. start() returns once QMP answers query-status; it does
 * not wait for the guest. Files in the run directory:
 *   qmp.sock     QMP (one client at a time)
 *   qemu.log     QEMU's own messages
 *   console.log  the guest's serial console (config.console_log)
 * plus the virtio-serial sockets the caller names. A failed start leaves
 * none of them, and no process. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/id.h"
#include "common/json.h"
#include "common/log.h"
#include "common/spawn.h"
#include "common/undo.h"
#include "runtime/qmp.h"
#include "runtime/vmm-proc.h"
#include "runtime/vmm.h"

#define QEMU_DEFAULT_BINARY "/usr/bin/qemu-system-x86_64"
#define QEMU_MAX_DEVICES 32
#define QEMU_START_TIMEOUT_MS 15000
#define QEMU_QMP_TIMEOUT_MS 5000
#define QEMU_VSOCK_AGENT_PORT 1024
#define QEMU_MAX_PARAMS 1024
#define QEMU_CMDLINE_MAX 2048 /* x86 COMMAND_LINE_SIZE */
/* what QEMU appends per virtio-mmio device without ACPI:
 * " virtio_mmio.device=512@0xfeb00e00:12" */
#define QEMU_MMIO_ARG_MAX 40
/* TCG translation cache. QEMU fills it linearly and only flushes it when
 * full, so a VM's resident cache grows to the full size over its life:
 * measured 38 MiB after boot, 104 MiB after a few busybox commands with
 * 256. The boot needs ~38 MiB (with 32 MiB it flushes mid-boot and costs
 * ~0.2 s of CPU), so 64 bounds an idle or busy pod at 64 MiB without
 * slowing the boot (A/B, 10 boots each: same QEMU CPU time median). */
#define QEMU_TCG_TB_MIB 64
#define SAVE_VERSION 1
/* a clone: loading the template's device state (~150 KB), and the guest
 * picking up the hot-added virtio-fs device */
#define QEMU_CLONE_LOAD_TIMEOUT_MS 10000
/* a template: writing its device state */
#define QEMU_TEMPLATE_SAVE_TIMEOUT_MS 30000
#define QEMU_COPY_CHUNK (1 << 20)
#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

/* The lean kernel command line; each speed-up was measured by the guest boot
 * smoke test (guest/README.md, tests/integration/guest-boot). The blacklisted
 * initcalls only self-test crypto code (kdf108, blake2s: cryptomgr.notests
 * does not reach them) or load the built-in X.509 keys that verify module
 * signatures (the initrd's modules are unsigned): ~45 ms of guest time under
 * TCG, measured with initcall_debug. */
/* noreplace-smp: a one-vCPU guest otherwise rewrites every LOCK prefix of
 * its kernel text at boot (alternatives_smp_unlock), ~100 ms of wall time
 * under TCG, to save a few cycles per atomic operation afterwards. */
static const char base_cmdline[] = "quiet panic=1 reboot=t cryptomgr.notests swiotlb=noforce noreplace-smp "
                                   "initcall_blacklist=crypto_kdf108_init,blake2s_mod_init,"
                                   "load_system_certificate_list";
/* microvm without legacy devices we do not use; the PIT stays when the guest
 * must calibrate the TSC itself (TCG with an unknown host TSC rate). */
static const char machine_opts[] = "x-option-roms=off,pic=off,rtc=on";

typedef struct qdev {
        vmm_device_kind kind;
        char *path;  /* fs socket, block path, serial socket */
        char *name;  /* fs tag, serial port name */
        int fd;      /* net: our dup of the tap fd, closed once QEMU has it */
        char mac[18];
        int mtu;
        bool readonly;
        uint32_t cid;
} qdev;

typedef struct qemu_vm qemu_vm;
typedef struct qemu_vm {
        vmm_base base;
        char *id, *run_dir, *binary, *kernel, *initrd, *kernel_params;
        vmm_accel accel;
        int tb_size_mib, vcpus, memory_mib;
        bool console_log;
        vmm_boot_mode boot_mode;
        char *tmpl_ram, *tmpl_state;
        int ram_fd, state_fd; /* a clone's, while it starts */
        qdev devs[QEMU_MAX_DEVICES];
        size_t n_devs;

        char *qmp_path, *log_path, *console_path;
        char **sockets; /* QEMU-created sockets to remove after it is gone (NULL-terminated) */
        cc_proc proc;
        int pidfd;
        bool child, running;
        qmp *q;
        vmm_endpoint ep;
        bool has_ep;
} qemu_vm;

/* ---- small helpers --------------------------------------------------------- */

typedef struct strv {
        char **v;
        size_t n, cap;
        bool oom;
} strv;

static void strv_addf(strv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void strv_addf(strv *a, const char *fmt, ...)
{
        if (a->oom)
                return;
        if (a->n + 2 > a->cap) {
                size_t cap = a->cap ? a->cap * 2 : 64;
                char **nv = realloc(a->v, cap * sizeof(*nv));
                if (!nv) {
                        a->oom = true;
                        return;
                }
                a->v = nv;
                a->cap = cap;
        }
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0) {
                a->oom = true;
                return;
        }
        a->v[a->n++] = s;
        a->v[a->n] = NULL;
}

/* 1..max bytes of [A-Za-z0-9._-] */
static bool token_ok(const char *s, size_t max)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > max)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

static bool abs_path_ok(const char *p, size_t max)
{
        if (!p || p[0] != '/' || strlen(p) >= max)
                return false;
        for (const char *c = p; *c; c++)
                if (*c == '\n' || *c == '\r')
                        return false;
        return true;
}

static bool mac_ok(const char *m)
{
        if (strlen(m) != 17)
                return false;
        for (int i = 0; i < 17; i++) {
                char c = m[i];
                if (i % 3 == 2 ? c != ':'
                               : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                        return false;
        }
        return true;
}

static char *dup_or_null(const char *s, bool *oom)
{
        if (!s)
                return NULL;
        char *d = strdup(s);
        if (!d)
                *oom = true;
        return d;
}

static const char *accel_name(vmm_accel a)
{
        switch (a) {
        case VMM_ACCEL_KVM:
                return "kvm";
        case VMM_ACCEL_TCG:
                return "tcg";
        default:
                return "auto";
        }
}

static void vm_free(vmm *v);

/* ---- probe / create / add_device ------------------------------------------- */

static int check_config(const vmm_config *c, bool need_files, cc_error **ret_err)
{
        if (!c)
                return cc_error_set(ret_err, -EINVAL, "qemu: no configuration");
        if (!token_ok(c->id, 128))
                return cc_error_set(ret_err, -EINVAL, "qemu: invalid VM id");
        if (!abs_path_ok(c->run_dir, SUN_PATH_MAX - sizeof("/console.log")))
                return cc_error_set(ret_err, -EINVAL, "qemu: run directory must be an absolute path "
                                                      "shorter than %zu bytes", SUN_PATH_MAX - sizeof("/console.log"));
        if (c->machine && strcmp(c->machine, "microvm") != 0)
                return cc_error_set(ret_err, -EOPNOTSUPP, "qemu: machine '%s' is not supported (only microvm)",
                                    token_ok(c->machine, 32) ? c->machine : "?");
        if (c->vcpus < 0 || c->vcpus > 64)
                return cc_error_set(ret_err, -EINVAL, "qemu: vcpus must be 1..64");
        if (c->memory_mib < 0 || (c->memory_mib > 0 && c->memory_mib < 64) || c->memory_mib > 1024 * 1024)
                return cc_error_set(ret_err, -EINVAL, "qemu: memory must be 64 MiB..1 TiB");
        if (c->tcg_tb_size_mib < 0 || c->tcg_tb_size_mib > 4096)
                return cc_error_set(ret_err, -EINVAL, "qemu: TCG translation cache must be 0..4096 MiB");
        if (c->kernel_params) {
                if (strlen(c->kernel_params) > QEMU_MAX_PARAMS)
                        return cc_error_set(ret_err, -EINVAL, "qemu: kernel parameters longer than %d bytes",
                                            QEMU_MAX_PARAMS);
                for (const char *p = c->kernel_params; *p; p++)
                        if ((unsigned char)*p < 0x20 || *p == 0x7f)
                                return cc_error_set(ret_err, -EINVAL,
                                                    "qemu: control character in kernel parameters");
        }
        if (!abs_path_ok(c->kernel, PATH_MAX) || !abs_path_ok(c->initrd, PATH_MAX))
                return cc_error_set(ret_err, -EINVAL, "qemu: kernel and initrd must be absolute paths");
        if (c->binary && !abs_path_ok(c->binary, PATH_MAX))
                return cc_error_set(ret_err, -EINVAL, "qemu: binary must be an absolute path");
        if (c->accel != VMM_ACCEL_AUTO && c->accel != VMM_ACCEL_KVM && c->accel != VMM_ACCEL_TCG)
                return cc_error_set(ret_err, -EINVAL, "qemu: unknown accelerator");
        if (c->boot_mode != VMM_BOOT && c->boot_mode != VMM_TEMPLATE_MAKE && c->boot_mode != VMM_TEMPLATE_CLONE)
                return cc_error_set(ret_err, -EINVAL, "qemu: unknown boot mode");
        if (c->boot_mode != VMM_BOOT && !abs_path_ok(c->template_ram, PATH_MAX))
                return cc_error_set(ret_err, -EINVAL, "qemu: template RAM must be an absolute path");
        if (c->boot_mode == VMM_TEMPLATE_CLONE && !abs_path_ok(c->template_state, PATH_MAX))
                return cc_error_set(ret_err, -EINVAL, "qemu: template state must be an absolute path");
        if (!need_files)
                return 0;
        const char *bin = c->binary ? c->binary : QEMU_DEFAULT_BINARY;
        if (access(bin, X_OK) < 0)
                return cc_error_errno(ret_err, "qemu: binary '%s'", bin);
        if (access(c->kernel, R_OK) < 0)
                return cc_error_errno(ret_err, "qemu: kernel '%s'", c->kernel);
        if (access(c->initrd, R_OK) < 0)
                return cc_error_errno(ret_err, "qemu: initrd '%s'", c->initrd);
        if (c->accel == VMM_ACCEL_KVM && !vmm_kvm_usable())
                return cc_error_set(ret_err, -ENODEV, "qemu: KVM requested but not usable (no /dev/kvm, or "
                                                    "no vmx/svm: e.g. a PVM host)");
        return 0;
}

static int qemu_probe(const vmm_config *c, cc_error **ret_err) { return check_config(c, true, ret_err); }

static int qemu_create(const vmm_config *c, vmm **ret, cc_error **ret_err)
{
        int r = check_config(c, false, ret_err);
        if (r < 0)
                return r;
        qemu_vm *v = calloc(1, sizeof(*v));
        if (!v)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        v->base.ops = &vmm_qemu_ops;
        v->pidfd = -1;
        v->ram_fd = v->state_fd = -1;
        bool oom = false;
        v->id = dup_or_null(c->id, &oom);
        v->run_dir = dup_or_null(c->run_dir, &oom);
        v->binary = dup_or_null(c->binary ? c->binary : QEMU_DEFAULT_BINARY, &oom);
        v->kernel = dup_or_null(c->kernel, &oom);
        v->initrd = dup_or_null(c->initrd, &oom);
        v->kernel_params = dup_or_null(c->kernel_params, &oom);
        v->accel = c->accel;
        v->tb_size_mib = c->tcg_tb_size_mib > 0 ? c->tcg_tb_size_mib : QEMU_TCG_TB_MIB;
        v->vcpus = c->vcpus > 0 ? c->vcpus : 1;
        v->memory_mib = c->memory_mib > 0 ? c->memory_mib : 256;
        v->console_log = c->console_log;
        v->boot_mode = c->boot_mode;
        if (c->boot_mode != VMM_BOOT)
                v->tmpl_ram = dup_or_null(c->template_ram, &oom);
        if (c->boot_mode == VMM_TEMPLATE_CLONE)
                v->tmpl_state = dup_or_null(c->template_state, &oom);
        if (!oom && (asprintf(&v->qmp_path, "%s/qmp.sock", c->run_dir) < 0 ||
                     asprintf(&v->log_path, "%s/qemu.log", c->run_dir) < 0 ||
                     asprintf(&v->console_path, "%s/console.log", c->run_dir) < 0))
                oom = true;
        if (oom) {
                vm_free((vmm *)v);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        *ret = (vmm *)v;
        return 0;
}

static int qemu_add_device(vmm *vv, const vmm_device *d, cc_error **ret_err)
{
        qemu_vm *v = (qemu_vm *)vv;
        if (v->running || v->pidfd >= 0)
                return cc_error_set(ret_err, -EBUSY, "qemu: devices are added before start (hotplug is "
                                                     "not implemented)");
        if (v->n_devs >= QEMU_MAX_DEVICES)
                return cc_error_set(ret_err, -E2BIG, "qemu: more than %d devices", QEMU_MAX_DEVICES);
        if (v->boot_mode != VMM_BOOT && d->kind != VMM_DEV_FS && d->kind != VMM_DEV_SERIAL &&
            d->kind != VMM_DEV_NET)
                return cc_error_set(ret_err, -EOPNOTSUPP, "qemu: a template or clone has only virtio-fs, "
                                                          "virtio-serial and network devices");
        qdev q = { .kind = d->kind, .fd = -1 };
        bool oom = false;
        switch (d->kind) {
        case VMM_DEV_FS:
                if (v->boot_mode == VMM_TEMPLATE_MAKE)
                        return cc_error_set(ret_err, -EOPNOTSUPP, "qemu: a template has no virtio-fs device "
                                                                  "(its clones get one hot-added)");
                /* virtiofs tags are at most 36 bytes */
                if (!token_ok(d->fs.tag, 36))
                        return cc_error_set(ret_err, -EINVAL, "qemu: invalid virtio-fs tag");
                if (!abs_path_ok(d->fs.socket_path, SUN_PATH_MAX))
                        return cc_error_set(ret_err, -EINVAL, "qemu: invalid virtio-fs socket path");
                for (size_t i = 0; i < v->n_devs; i++)
                        if (v->devs[i].kind == VMM_DEV_FS && strcmp(v->devs[i].name, d->fs.tag) == 0)
                                return cc_error_set(ret_err, -EEXIST, "qemu: virtio-fs tag '%s' used twice",
                                                    d->fs.tag);
                q.name = dup_or_null(d->fs.tag, &oom);
                q.path = dup_or_null(d->fs.socket_path, &oom);
                break;
        case VMM_DEV_NET:
                /* a template's NIC has no backend: each clone brings its tap */
                if (d->net.tap_fd < 0 && v->boot_mode != VMM_TEMPLATE_MAKE)
                        return cc_error_set(ret_err, -EBADF, "qemu: invalid tap fd");
                if (!mac_ok(d->net.mac))
                        return cc_error_set(ret_err, -EINVAL, "qemu: invalid MAC address");
                if (d->net.mtu != 0 && (d->net.mtu < 68 || d->net.mtu > 65535))
                        return cc_error_set(ret_err, -EINVAL, "qemu: invalid MTU %d", d->net.mtu);
                if (d->net.tap_fd >= 0 && (q.fd = fcntl(d->net.tap_fd, F_DUPFD_CLOEXEC, 3)) < 0)
                        return cc_error_errno(ret_err, "qemu: dup tap fd");
                memcpy(q.mac, d->net.mac, sizeof(q.mac));
                q.mac[17] = 0;
                q.mtu = d->net.mtu;
                break;
        case VMM_DEV_BLOCK:
                if (!abs_path_ok(d->block.path, PATH_MAX))
                        return cc_error_set(ret_err, -EINVAL, "qemu: invalid block device path");
                q.path = dup_or_null(d->block.path, &oom);
                q.readonly = d->block.readonly;
                break;
        case VMM_DEV_VSOCK:
                if (d->vsock.guest_cid < 3 || d->vsock.guest_cid == UINT32_MAX)
                        return cc_error_set(ret_err, -EINVAL, "qemu: invalid vsock guest cid %" PRIu32,
                                            d->vsock.guest_cid);
                for (size_t i = 0; i < v->n_devs; i++)
                        if (v->devs[i].kind == VMM_DEV_VSOCK)
                                return cc_error_set(ret_err, -EEXIST, "qemu: one vsock device at most");
                q.cid = d->vsock.guest_cid;
                break;
        case VMM_DEV_SERIAL:
                if (!token_ok(d->serial.name, 64))
                        return cc_error_set(ret_err, -EINVAL, "qemu: invalid virtio-serial port name");
                if (!abs_path_ok(d->serial.socket_path, SUN_PATH_MAX))
                        return cc_error_set(ret_err, -EINVAL, "qemu: invalid virtio-serial socket path");
                for (size_t i = 0; i < v->n_devs; i++)
                        if (v->devs[i].kind == VMM_DEV_SERIAL && strcmp(v->devs[i].name, d->serial.name) == 0)
                                return cc_error_set(ret_err, -EEXIST, "qemu: serial port '%s' used twice",
                                                    d->serial.name);
                q.name = dup_or_null(d->serial.name, &oom);
                q.path = dup_or_null(d->serial.socket_path, &oom);
                break;
        default:
                return cc_error_set(ret_err, -EOPNOTSUPP, "qemu: unknown device kind %d", (int)d->kind);
        }
        if (oom) {
                free(q.name);
                free(q.path);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        v->devs[v->n_devs++] = q;
        return 0;
}

/* ---- argv -------------------------------------------------------------------- */

static bool has_kind(qemu_vm *v, vmm_device_kind k)
{
        for (size_t i = 0; i < v->n_devs; i++)
                if (v->devs[i].kind == k)
                        return true;
        return false;
}

/* Builds QEMU's argv for accelerator a (resolved: KVM or TCG). */
static int build_argv(qemu_vm *v, vmm_accel a, strv *av, cc_error **ret_err)
{
        bool tmpl = v->boot_mode != VMM_BOOT, clone = v->boot_mode == VMM_TEMPLATE_CLONE;
        /* vhost-user needs shared guest memory; a template's is in a file */
        bool memfd = has_kind(v, VMM_DEV_FS) || tmpl;
        uint64_t tsc = a == VMM_ACCEL_TCG ? vmm_host_tsc_khz() : 0;
        _cleanup_free_ char *e_kernel = vmm_qemu_escape(v->kernel), *e_initrd = vmm_qemu_escape(v->initrd),
                            *e_qmp = vmm_qemu_escape(v->qmp_path),
                            *e_console = vmm_qemu_escape(v->console_path),
                            *e_ram = vmm_qemu_escape(v->tmpl_ram ? v->tmpl_ram : "");
        if (!e_kernel || !e_initrd || !e_qmp || !e_console || !e_ram)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");

        /* kernel command line */
        /* Under TCG the guest's TSC is the host's (constant) TSC, but the
         * clocksource watchdog compares it with jiffies, which lag whenever
         * the emulated CPU is starved, and then drops the TSC: tsc=reliable. */
        /* Two options of cocoon's kernel (guest/patches/), both for TCG and
         * only when the kernel has them:
         * lapic_timer_khz: QEMU's emulated APIC timer counts at 1 GHz, and
         * saying so spares the guest 100 ms of calibrating it (under KVM the
         * guest uses the TSC deadline timer and calibrates nothing);
         * keep_initmem: not poisoning and freeing the kernel's init code
         * spares 50 ms of translation invalidations, for ~1 MiB of guest RAM. */
        unsigned kf = vmm_kernel_features(v->kernel);
        char tsc_opt[128] = "";
        if (tsc)
                snprintf(tsc_opt, sizeof(tsc_opt), " tsc_early_khz=%" PRIu64 " tsc=reliable%s%s", tsc,
                         kf & VMM_KERNEL_LAPIC_KHZ ? " lapic_timer_khz=1000000" : "",
                         kf & VMM_KERNEL_KEEP_INITMEM ? " keep_initmem" : "");
        /* Without ACPI tables the guest skips the ACPI interpreter (~35 ms
         * under TCG) and finds the virtio-mmio devices on its command line,
         * where QEMU adds them (auto-kernel-cmdline), if the kernel takes
         * them there (Debian's cloud kernel does not). */
        /* A template needs ACPI: the guest finds its PCIe host bridge (for
         * the clones' hot-added virtio-fs) there; pcie_ports=native has it
         * take the root port's hotplug itself (microvm's tables offer no
         * _OSC), and pcie_link_delay=0 (guest/patches/0003) spares each
         * hot-plugged device 120 ms of waiting for an emulated link. The
         * clones inherit the booted guest, command line and all. */
        bool acpi = tmpl || !(kf & VMM_KERNEL_MMIO_CMDLINE);
        size_t cmdline_max = QEMU_CMDLINE_MAX - (acpi ? 0 : QEMU_MMIO_ARG_MAX * (v->n_devs + 1));
        _cleanup_free_ char *cmdline = NULL;
        if (asprintf(&cmdline, "%s%s %s%s%s%s%s", v->console_log ? "console=ttyS0 " : "", base_cmdline,
                     v->console_log ? "8250.nr_uarts=1" : "8250.nr_uarts=0", tsc_opt,
                     !tmpl ? "" : kf & VMM_KERNEL_PCIE_LINK_DELAY ? " pcie_ports=native pcie_link_delay=0"
                                                                 : " pcie_ports=native",
                     v->kernel_params && *v->kernel_params ? " " : "",
                     v->kernel_params ? v->kernel_params : "") < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        if (strlen(cmdline) >= cmdline_max)
                return cc_error_set(ret_err, -E2BIG, "qemu: kernel command line longer than %zu bytes",
                                    cmdline_max);

        strv_addf(av, "%s", v->binary);
        strv_addf(av, "-name");
        strv_addf(av, "cocoon-%s", v->id);
        strv_addf(av, "-M");
        strv_addf(av, "microvm,%s,%s,isa-serial=%s%s%s%s", machine_opts,
                  a == VMM_ACCEL_TCG && !tsc ? "pit=on" : "pit=off", v->console_log ? "on" : "off",
                  acpi ? "" : ",acpi=off", tmpl ? ",pcie=on" : "", memfd ? ",memory-backend=mem" : "");
        strv_addf(av, "-accel");
        if (a == VMM_ACCEL_KVM)
                strv_addf(av, "kvm");
        else
                strv_addf(av, "tcg,tb-size=%d", v->tb_size_mib);
        strv_addf(av, "-cpu");
        strv_addf(av, "%s", a == VMM_ACCEL_KVM ? "host" : "max");
        strv_addf(av, "-m");
        strv_addf(av, "%dM", v->memory_mib);
        strv_addf(av, "-smp");
        strv_addf(av, "%d", v->vcpus);
        if (clone) {
                /* the copy of the template's RAM start() made */
                strv_addf(av, "-object");
                strv_addf(av, "memory-backend-file,id=mem,size=%dM,mem-path=/proc/self/fd/%d,share=on",
                          v->memory_mib, v->ram_fd);
        } else if (tmpl) {
                strv_addf(av, "-object");
                strv_addf(av, "memory-backend-file,id=mem,size=%dM,mem-path=%s,share=on", v->memory_mib, e_ram);
        } else if (memfd) {
                strv_addf(av, "-object");
                strv_addf(av, "memory-backend-memfd,id=mem,size=%dM,share=on", v->memory_mib);
        }
        /* start paused: the guest runs only once QMP is up (cont in start);
         * QMP also answers faster before a TCG vCPU competes for the lock */
        strv_addf(av, "-S");
        strv_addf(av, "-nodefaults");
        strv_addf(av, "-no-user-config");
        strv_addf(av, "-nographic");
        strv_addf(av, "-no-reboot");
        strv_addf(av, "-sandbox");
        strv_addf(av, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        strv_addf(av, "-msg");
        strv_addf(av, "timestamp=on");
        if (!clone) {
                strv_addf(av, "-kernel");
                strv_addf(av, "%s", v->kernel);
                strv_addf(av, "-initrd");
                strv_addf(av, "%s", v->initrd);
                strv_addf(av, "-append");
                strv_addf(av, "%s", cmdline);
        }
        strv_addf(av, "-chardev");
        strv_addf(av, "socket,id=qmp,path=%s,server=on,wait=off", e_qmp);
        strv_addf(av, "-mon");
        strv_addf(av, "chardev=qmp,mode=control");
        if (v->console_log) {
                strv_addf(av, "-chardev");
                strv_addf(av, "file,id=console,path=%s", e_console);
                strv_addf(av, "-serial");
                strv_addf(av, "chardev:console");
        }
        /* modern virtio-mmio: vhost-user-fs needs it, the rest is better off */
        strv_addf(av, "-global");
        strv_addf(av, "virtio-mmio.force-legacy=false");
        if (tmpl) {
                strv_addf(av, "-device");
                strv_addf(av, "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=0");
        }
        if (clone) {
                strv_addf(av, "-incoming");
                strv_addf(av, "defer");
        }

        bool serial_bus = false;
        int n_serial = 0;
        for (size_t i = 0; i < v->n_devs; i++)
                n_serial += v->devs[i].kind == VMM_DEV_SERIAL;
        for (size_t i = 0; i < v->n_devs; i++) {
                qdev *d = &v->devs[i];
                _cleanup_free_ char *e_path = d->path ? vmm_qemu_escape(d->path) : NULL;
                if (d->path && !e_path)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                switch (d->kind) {
                case VMM_DEV_FS:
                        if (clone)
                                break; /* hot-added once the template's state is loaded */
                        strv_addf(av, "-chardev");
                        strv_addf(av, "socket,id=fs%zu,path=%s", i, e_path);
                        strv_addf(av, "-device");
                        strv_addf(av, "vhost-user-fs-device,chardev=fs%zu,tag=%s,queue-size=1024", i, d->name);
                        break;
                case VMM_DEV_NET:
                        if (d->fd < 0) { /* a template's */
                                strv_addf(av, "-device");
                                strv_addf(av, "virtio-net-device,mac=%s", d->mac);
                                break;
                        }
                        strv_addf(av, "-netdev");
                        strv_addf(av, "tap,id=net%zu,fd=%d,vhost=off", i, d->fd);
                        strv_addf(av, "-device");
                        if (d->mtu > 0)
                                strv_addf(av, "virtio-net-device,netdev=net%zu,mac=%s,host_mtu=%d", i, d->mac,
                                          d->mtu);
                        else
                                strv_addf(av, "virtio-net-device,netdev=net%zu,mac=%s", i, d->mac);
                        break;
                case VMM_DEV_BLOCK:
                        strv_addf(av, "-drive");
                        strv_addf(av, "if=none,id=blk%zu,file=%s,format=raw,readonly=%s,aio=threads",
                                  i, e_path, d->readonly ? "on" : "off");
                        strv_addf(av, "-device");
                        strv_addf(av, "virtio-blk-device,drive=blk%zu", i);
                        break;
                case VMM_DEV_VSOCK:
                        strv_addf(av, "-device");
                        strv_addf(av, "vhost-vsock-device,guest-cid=%" PRIu32, d->cid);
                        break;
                case VMM_DEV_SERIAL:
                        if (!serial_bus) {
                                /* QEMU's default of 31 ports makes the guest
                                 * driver set up 64 virtqueues at probe; one
                                 * per port we use (+ port 0, reserved for a
                                 * console) cuts virtio_console's init from
                                 * ~50 to ~35 ms under TCG */
                                strv_addf(av, "-device");
                                strv_addf(av, "virtio-serial-device,max_ports=%d", n_serial + 1);
                                serial_bus = true;
                        }
                        strv_addf(av, "-chardev");
                        strv_addf(av, "socket,id=ser%zu,path=%s,server=on,wait=off", i, e_path);
                        strv_addf(av, "-device");
                        strv_addf(av, "virtserialport,chardev=ser%zu,name=%s", i, d->name);
                        break;
                }
        }
        if (av->oom)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return 0;
}

/* ---- start ------------------------------------------------------------------- */

static void undo_unlink(void *path) { (void)unlink(path); }
static void undo_rmdir(void *path) { (void)rmdir(path); }

static void undo_kill(void *arg)
{
        qemu_vm *v = arg;
        qmp_free(v->q);
        v->q = NULL;
        (void)vmm_proc_terminate(&v->proc, v->pidfd, SIGKILL, 0, v->child);
        if (v->pidfd >= 0)
                close(v->pidfd);
        v->pidfd = -1;
        v->proc = (cc_proc){ 0 };
        v->child = false;
}

static int push_unlink(cc_undo *u, const char *path)
{
        char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        return cc_undo_push(u, undo_unlink, p, free);
}

/* The sockets QEMU creates (server sockets), for removal once it is gone. */
static int collect_sockets(qemu_vm *v)
{
        size_t n = 1;
        for (size_t i = 0; i < v->n_devs; i++)
                n += v->devs[i].kind == VMM_DEV_SERIAL;
        char **s = calloc(n + 1, sizeof(char *));
        if (!s)
                return -ENOMEM;
        size_t k = 0;
        s[k++] = strdup(v->qmp_path);
        for (size_t i = 0; i < v->n_devs; i++)
                if (v->devs[i].kind == VMM_DEV_SERIAL)
                        s[k++] = strdup(v->devs[i].path);
        for (size_t i = 0; i < k; i++)
                if (!s[i]) {
                        cc_strv_free(s);
                        return -ENOMEM;
                }
        cc_strv_free(v->sockets);
        v->sockets = s;
        return 0;
}

/* After QEMU is gone: its sockets and its own log (whose last line goes to
 * the debug log); console.log stays, the caller asked for it. */
static void remove_files(qemu_vm *v)
{
        for (char **s = v->sockets; s && *s; s++)
                (void)unlink(*s);
        if (v->log_path) {
                char tail[256];
                vmm_log_tail(v->log_path, tail, sizeof(tail));
                if (tail[0])
                        log_debug("qemu %s: last message: %s", v->id, tail);
                (void)unlink(v->log_path);
        }
}

static void set_endpoint(qemu_vm *v)
{
        v->has_ep = false;
        for (size_t i = 0; i < v->n_devs; i++)
                if (v->devs[i].kind == VMM_DEV_VSOCK) {
                        v->ep = (vmm_endpoint){ .kind = VMM_EP_VSOCK, .cid = v->devs[i].cid,
                                                .port = QEMU_VSOCK_AGENT_PORT };
                        v->has_ep = true;
                        return;
                }
        for (size_t i = 0; i < v->n_devs; i++)
                if (v->devs[i].kind == VMM_DEV_SERIAL) {
                        v->ep = (vmm_endpoint){ .kind = VMM_EP_UNIX };
                        snprintf(v->ep.path, sizeof(v->ep.path), "%s", v->devs[i].path);
                        v->has_ep = true;
                        return;
                }
}

static int check_status(qemu_vm *v, const char **ret_status, cc_error **ret_err)
{
        _cleanup_json_ json_object *st = NULL;
        int r = qmp_execute(v->q, "query-status", NULL, QEMU_QMP_TIMEOUT_MS, &st, ret_err);
        if (r < 0)
                return r;
        json_object *s = cc_json_get_typed(st, "status", json_type_string);
        const char *status = s ? json_object_get_string(s) : "";
        static const char *const ok[] = { "running", "paused", "prelaunch" };
        for (size_t i = 0; i < CC_ARRAY_SIZE(ok); i++)
                if (strcmp(status, ok[i]) == 0) {
                        if (ret_status)
                                *ret_status = ok[i];
                        return 0;
                }
        char safe[48];
        size_t i = 0;
        for (; status[i] && i < sizeof(safe) - 1; i++)
                safe[i] = (status[i] >= 0x20 && status[i] < 0x7f) ? status[i] : '?';
        safe[i] = 0;
        return cc_error_set(ret_err, -EIO, "qemu: VM is in state '%s'", safe);
}

/* ---- templates ------------------------------------------------------------------ */

static int qemu_stop(vmm *vv, int timeout_ms, cc_error **ret_err);

/* Both ends of a template's migration skip the RAM (its file is shared):
 * only the device state travels. */
static int set_ignore_shared(qemu_vm *v, cc_error **ret_err)
{
        _cleanup_json_ json_object *caps = json_tokener_parse(
                "{\"capabilities\": [{\"capability\": \"x-ignore-shared\", \"state\": true}]}");
        if (!caps)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return qmp_execute(v->q, "migrate-set-capabilities", caps, QEMU_QMP_TIMEOUT_MS, NULL, ret_err);
}

/* Copies the template's RAM into the clone's memfd: only the data extents of
 * the (sparse) file, the guest pages the template touched. */
static int copy_ram(int from, int to, off_t size, cc_error **ret_err)
{
        _cleanup_free_ char *buf = malloc(QEMU_COPY_CHUNK);
        if (!buf)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        off_t off = 0;
        while (off < size) {
                off_t data = lseek(from, off, SEEK_DATA);
                if (data < 0 && errno == ENXIO)
                        break;
                if (data < 0)
                        return cc_error_errno(ret_err, "template RAM: seek");
                off_t hole = lseek(from, data, SEEK_HOLE);
                if (hole < 0)
                        return cc_error_errno(ret_err, "template RAM: seek");
                if (hole > size)
                        hole = size;
                for (off = data; off < hole;) {
                        size_t want = (size_t)CC_MIN((off_t)QEMU_COPY_CHUNK, hole - off);
                        ssize_t n = pread(from, buf, want, off);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                return n < 0 ? cc_error_errno(ret_err, "template RAM: read")
                                             : cc_error_set(ret_err, -EIO, "template RAM: short file");
                        for (ssize_t w = 0; w < n;) {
                                ssize_t k = pwrite(to, buf + w, (size_t)(n - w), off + w);
                                if (k < 0 && errno == EINTR)
                                        continue;
                                if (k < 0)
                                        return cc_error_errno(ret_err, "clone RAM: write");
                                w += k;
                        }
                        off += n;
                }
        }
        return 0;
}

/* Before spawning a clone: its RAM (a memfd holding a copy of the template's,
 * made after the spawn) and the template's device state, both inherited. */
static int clone_open(qemu_vm *v, int *ret_tmpl_ram, cc_error **ret_err)
{
        _cleanup_close_ int from = open(v->tmpl_ram, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (from < 0)
                return cc_error_errno(ret_err, "template RAM '%s'", v->tmpl_ram);
        struct stat st;
        if (fstat(from, &st) < 0)
                return cc_error_errno(ret_err, "template RAM '%s'", v->tmpl_ram);
        if (!S_ISREG(st.st_mode) || st.st_size != (off_t)v->memory_mib * 1024 * 1024)
                return cc_error_set(ret_err, -EINVAL, "template RAM '%s' is not a %d MiB file", v->tmpl_ram,
                                    v->memory_mib);
        v->state_fd = open(v->tmpl_state, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (v->state_fd < 0)
                return cc_error_errno(ret_err, "template state '%s'", v->tmpl_state);
        v->ram_fd = memfd_create("cocoon-vm-ram", MFD_CLOEXEC);
        if (v->ram_fd < 0)
                return cc_error_errno(ret_err, "memfd for the VM's RAM");
        if (ftruncate(v->ram_fd, st.st_size) < 0)
                return cc_error_errno(ret_err, "memfd for the VM's RAM");
        *ret_tmpl_ram = TAKE_FD(from);
        return 0;
}

static void clone_close(qemu_vm *v)
{
        if (v->ram_fd >= 0)
                close(v->ram_fd);
        if (v->state_fd >= 0)
                close(v->state_fd);
        v->ram_fd = v->state_fd = -1;
}

/* After spawning a clone: load the template's device state, run, and hot-add
 * the virtio-fs device into the root port (the guest's pciehp probes it;
 * the agent's virtio-fs mount waits for its tag). */
static int clone_resume(qemu_vm *v, cc_error **ret_err)
{
        _cleanup_json_ json_object *inc = json_object_new_object();
        char uri[32];
        snprintf(uri, sizeof(uri), "fd:%d", v->state_fd);
        if (!inc || json_object_object_add(inc, "uri", json_object_new_string(uri)) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int r = set_ignore_shared(v, ret_err);
        if (r == 0)
                r = qmp_execute(v->q, "migrate-incoming", inc, QEMU_QMP_TIMEOUT_MS, NULL, ret_err);
        if (r < 0)
                return r;
        int64_t deadline = vmm_mono_ms() + QEMU_CLONE_LOAD_TIMEOUT_MS;
        for (;;) {
                _cleanup_json_ json_object *st = NULL;
                if ((r = qmp_execute(v->q, "query-status", NULL, QEMU_QMP_TIMEOUT_MS, &st, ret_err)) < 0)
                        return r;
                json_object *so = cc_json_get_typed(st, "status", json_type_string);
                const char *status = so ? json_object_get_string(so) : "";
                if (strcmp(status, "paused") == 0)
                        break;
                if (strcmp(status, "inmigrate") != 0)
                        return cc_error_set(ret_err, -EIO, "loading the template failed (VM state '%.32s')",
                                            status);
                if (vmm_mono_ms() > deadline)
                        return cc_error_set(ret_err, -ETIMEDOUT, "loading the template took over %d ms",
                                            QEMU_CLONE_LOAD_TIMEOUT_MS);
                usleep(1000);
        }
        if ((r = qmp_execute(v->q, "cont", NULL, QEMU_QMP_TIMEOUT_MS, NULL, ret_err)) < 0)
                return r;
        for (size_t i = 0; i < v->n_devs; i++) {
                qdev *d = &v->devs[i];
                if (d->kind != VMM_DEV_FS)
                        continue;
                char id[16];
                snprintf(id, sizeof(id), "fs%zu", i);
                _cleanup_json_ json_object *ch = json_object_new_object(), *be = json_object_new_object(),
                                           *data = json_object_new_object(), *addr = json_object_new_object(),
                                           *ad = json_object_new_object(), *dev = json_object_new_object();
                if (!ch || !be || !data || !addr || !ad || !dev)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                json_object_object_add(ad, "path", json_object_new_string(d->path));
                json_object_object_add(addr, "type", json_object_new_string("unix"));
                json_object_object_add(addr, "data", json_object_get(ad));
                json_object_object_add(data, "addr", json_object_get(addr));
                json_object_object_add(data, "server", json_object_new_boolean(false));
                json_object_object_add(be, "type", json_object_new_string("socket"));
                json_object_object_add(be, "data", json_object_get(data));
                json_object_object_add(ch, "id", json_object_new_string(id));
                json_object_object_add(ch, "backend", json_object_get(be));
                json_object_object_add(dev, "driver", json_object_new_string("vhost-user-fs-pci"));
                json_object_object_add(dev, "id", json_object_new_string(id));
                json_object_object_add(dev, "chardev", json_object_new_string(id));
                json_object_object_add(dev, "tag", json_object_new_string(d->name));
                json_object_object_add(dev, "queue-size", json_object_new_int(1024));
                json_object_object_add(dev, "bus", json_object_new_string("rp0"));
                if ((r = qmp_execute(v->q, "chardev-add", ch, QEMU_QMP_TIMEOUT_MS, NULL, ret_err)) < 0 ||
                    (r = qmp_execute(v->q, "device_add", dev, QEMU_QMP_TIMEOUT_MS, NULL, ret_err)) < 0)
                        return cc_error_prefix(ret_err, "hot-add virtio-fs '%s'", d->name);
                break; /* one root port */
        }
        return 0;
}

static int qemu_template_save(vmm *vv, const char *state_path, cc_error **ret_err)
{
        qemu_vm *v = (qemu_vm *)vv;
        if (v->boot_mode != VMM_TEMPLATE_MAKE)
                return cc_error_set(ret_err, -EINVAL, "qemu %s: not a template", v->id);
        if (!v->running || !v->q)
                return cc_error_set(ret_err, -ESRCH, "qemu %s: not running", v->id);
        _cleanup_close_ int fd = open(state_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return cc_error_errno(ret_err, "template state '%s'", state_path);
        _cleanup_json_ json_object *mig = json_tokener_parse("{\"uri\": \"fd:state\"}");
        if (!mig)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int r;
        if ((r = qmp_execute(v->q, "stop", NULL, QEMU_QMP_TIMEOUT_MS, NULL, ret_err)) < 0 ||
            (r = set_ignore_shared(v, ret_err)) < 0 ||
            (r = qmp_getfd(v->q, "state", fd, QEMU_QMP_TIMEOUT_MS, ret_err)) < 0 ||
            (r = qmp_execute(v->q, "migrate", mig, QEMU_QMP_TIMEOUT_MS, NULL, ret_err)) < 0)
                goto fail;
        int64_t deadline = vmm_mono_ms() + QEMU_TEMPLATE_SAVE_TIMEOUT_MS;
        for (;;) {
                _cleanup_json_ json_object *st = NULL;
                if ((r = qmp_execute(v->q, "query-migrate", NULL, QEMU_QMP_TIMEOUT_MS, &st, ret_err)) < 0)
                        goto fail;
                json_object *so = cc_json_get_typed(st, "status", json_type_string);
                const char *status = so ? json_object_get_string(so) : "";
                if (strcmp(status, "completed") == 0)
                        break;
                if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
                        json_object *eo = cc_json_get_typed(st, "error-desc", json_type_string);
                        r = cc_error_set(ret_err, -EIO, "saving the template failed: %.200s",
                                         eo ? json_object_get_string(eo) : status);
                        goto fail;
                }
                if (vmm_mono_ms() > deadline) {
                        r = cc_error_set(ret_err, -ETIMEDOUT, "saving the template took over %d ms",
                                         QEMU_TEMPLATE_SAVE_TIMEOUT_MS);
                        goto fail;
                }
                usleep(2000);
        }
        if (fsync(fd) < 0) {
                r = cc_error_errno(ret_err, "template state '%s'", state_path);
                goto fail;
        }
        return qemu_stop(vv, 0, ret_err);
fail:
        (void)unlink(state_path);
        return cc_error_prefix(ret_err, "qemu %s", v->id);
}

static int qemu_start(vmm *vv, cc_error **ret_err)
{
        qemu_vm *v = (qemu_vm *)vv;
        if (v->running || v->pidfd >= 0)
                return cc_error_set(ret_err, -EALREADY, "qemu %s: already started", v->id);

        vmm_config c = { .id = v->id, .run_dir = v->run_dir, .binary = v->binary, .kernel = v->kernel,
                         .initrd = v->initrd, .accel = v->accel };
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_close_ int logfd = -1, ino = -1, tmpl_ram = -1;
        cc_error *err = NULL;
        int r = check_config(&c, true, &err);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < v->n_devs; i++) {
                struct stat st;
                if (v->devs[i].kind == VMM_DEV_FS &&
                    (stat(v->devs[i].path, &st) < 0 || !S_ISSOCK(st.st_mode))) {
                        r = cc_error_set(&err, -ENOENT, "virtio-fs '%s': no vhost-user socket at '%s' "
                                                        "(virtiofsd not running?)",
                                         v->devs[i].name, v->devs[i].path);
                        goto out;
                }
                if (v->devs[i].kind == VMM_DEV_BLOCK && access(v->devs[i].path, v->devs[i].readonly ? R_OK
                                                                                           : R_OK | W_OK) < 0) {
                        r = cc_error_errno(&err, "block device '%s'", v->devs[i].path);
                        goto out;
                }
        }
        vmm_accel a = v->accel == VMM_ACCEL_AUTO ? (vmm_kvm_usable() ? VMM_ACCEL_KVM : VMM_ACCEL_TCG) : v->accel;

        struct stat st;
        if (stat(v->run_dir, &st) < 0) {
                if (errno != ENOENT) {
                        r = cc_error_errno(&err, "run directory '%s'", v->run_dir);
                        goto out;
                }
                if (mkdir(v->run_dir, 0700) < 0) {
                        r = cc_error_errno(&err, "create run directory '%s'", v->run_dir);
                        goto out;
                }
                cc_undo_push(&undo, undo_rmdir, strdup(v->run_dir), free);
        } else if (!S_ISDIR(st.st_mode)) {
                r = cc_error_set(&err, -ENOTDIR, "run directory '%s' is not a directory", v->run_dir);
                goto out;
        }
        if (collect_sockets(v) < 0) {
                r = cc_error_set(&err, -ENOMEM, "out of memory");
                goto out;
        }
        /* Stale sockets would satisfy the wait below before QEMU listens. */
        for (char **s = v->sockets; *s; s++)
                (void)unlink(*s);

        bool clone = v->boot_mode == VMM_TEMPLATE_CLONE;
        if (clone && (r = clone_open(v, &tmpl_ram, &err)) < 0)
                goto out;
        strv av = { 0 };
        r = build_argv(v, a, &av, &err);
        argv = av.v;
        if (r < 0)
                goto out;

        logfd = open(v->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC |
                                                              O_NOFOLLOW | O_NOCTTY, 0600);
        if (logfd < 0) {
                r = cc_error_errno(&err, "open '%s'", v->log_path);
                goto out;
        }
        push_unlink(&undo, v->log_path);
        if (v->console_log)
                push_unlink(&undo, v->console_path);
        ino = vmm_watch_dir(v->run_dir, &err);
        if (ino < 0) {
                r = ino;
                goto out;
        }

        int keep[QEMU_MAX_DEVICES + 2];
        int n_keep = 0;
        for (size_t i = 0; i < v->n_devs; i++)
                if (v->devs[i].kind == VMM_DEV_NET && v->devs[i].fd >= 0)
                        keep[n_keep++] = v->devs[i].fd;
        if (clone) {
                keep[n_keep++] = v->ram_fd;
                keep[n_keep++] = v->state_fd;
        }
        cc_spawn_opts so = CC_SPAWN_OPTS_INIT;
        so.stdout_fd = logfd;
        so.stderr_fd = logfd;
        so.keep_fds = keep;
        so.n_keep_fds = n_keep;
        so.new_session = true;
        so.cwd = "/";
        /* a template lives only while the thread that builds it does: a
         * cocoond killed meanwhile takes it along */
        if (v->boot_mode == VMM_TEMPLATE_MAKE)
                so.pdeath_signal = SIGKILL;
        if (cc_log_enabled(CC_LOG_DEBUG)) {
                /* one line, for reproducing a boot by hand */
                size_t len = 0;
                for (char **p = argv; *p; p++)
                        len += strlen(*p) + 3;
                _cleanup_free_ char *line = malloc(len + 1);
                if (line) {
                        char *o = line;
                        for (char **p = argv; *p; p++)
                                o += sprintf(o, strchr(*p, ' ') ? "'%s' " : "%s ", *p);
                        o[o > line ? -1 : 0] = 0;
                        log_debug("qemu %s: %s", v->id, line);
                }
        }
        /* sockets and the kill step are pushed before spawning: if the push
         * fails (ENOMEM), nothing has been started yet */
        for (char **s = v->sockets; *s; s++)
                push_unlink(&undo, *s);
        r = cc_spawn(argv[0], argv, &so, &v->proc, &err);
        if (r < 0)
                goto out;
        v->child = true;
        v->pidfd = cc_proc_pidfd(&v->proc, &err);
        if (v->pidfd < 0) {
                r = v->pidfd;
                v->pidfd = -1;
                (void)vmm_proc_terminate(&v->proc, -1, SIGKILL, 0, true);
                goto out;
        }
        if (cc_undo_push(&undo, undo_kill, v, NULL) < 0) {
                r = cc_error_set(&err, -ENOMEM, "out of memory");
                goto out;
        }

        /* a clone's RAM, copied while QEMU starts (it maps the memfd as it
         * is; the guest runs only after the copy) */
        if (clone && (r = copy_ram(tmpl_ram, v->ram_fd, (off_t)v->memory_mib * 1024 * 1024, &err)) < 0)
                goto out;
        r = vmm_wait_file(ino, v->run_dir, "qmp.sock", v->pidfd, QEMU_START_TIMEOUT_MS, &err);
        if (r == 0)
                r = qmp_connect(v->qmp_path, QEMU_QMP_TIMEOUT_MS, &v->q, &err);
        if (r == 0 && clone)
                r = clone_resume(v, &err);
        if (r == 0 && !clone)
                r = check_status(v, NULL, &err);
        if (r == 0 && !clone)
                r = qmp_execute(v->q, "cont", NULL, QEMU_QMP_TIMEOUT_MS, NULL, &err);
        if (r < 0) {
                /* QEMU failing on its own closes QMP while it exits: give it a
                 * moment, its last words say more than a reset connection */
                if (vmm_wait_exit(v->pidfd, r == -ETIMEDOUT ? 0 : 1000) == 0)
                        r = vmm_error_exited(&err, "qemu", v->log_path, 400);
                goto out;
        }
        for (size_t i = 0; i < v->n_devs; i++)
                if (v->devs[i].fd >= 0) {
                        close(v->devs[i].fd);
                        v->devs[i].fd = -1;
                }
        clone_close(v);
        set_endpoint(v);
        v->running = true;
        cc_undo_disarm(&undo);
        log_debug("qemu %s: pid %d, accel %s", v->id, (int)v->proc.pid, accel_name(a));
        return 0;
out:
        clone_close(v);
        cc_error_prefix(&err, "start VM %s", v->id);
        return cc_error_propagate(ret_err, err);
}

/* ---- running VM ---------------------------------------------------------------- */

static bool qemu_alive(vmm *vv)
{
        qemu_vm *v = (qemu_vm *)vv;
        return v->proc.pid > 0 && cc_proc_alive(&v->proc);
}

/* Runs a QMP command, reconnecting once when the connection was lost. */
static int qmp_run(qemu_vm *v, const char *cmd, cc_error **ret_err)
{
        if (!v->running || !qemu_alive((vmm *)v))
                return cc_error_set(ret_err, -ESRCH, "qemu %s: not running", v->id);
        for (int attempt = 0;; attempt++) {
                cc_error *err = NULL;
                if (!v->q && qmp_connect(v->qmp_path, QEMU_QMP_TIMEOUT_MS, &v->q, &err) < 0)
                        return cc_error_propagate(ret_err, err);
                int r = qmp_execute(v->q, cmd, NULL, QEMU_QMP_TIMEOUT_MS, NULL, &err);
                if (r >= 0)
                        return 0;
                bool lost = r == -ENOTCONN || r == -ECONNRESET || r == -EPIPE;
                if (lost) {
                        qmp_free(v->q);
                        v->q = NULL;
                }
                if (!lost || attempt > 0) {
                        cc_error_prefix(&err, "VM %s", v->id);
                        return cc_error_propagate(ret_err, err);
                }
                cc_error_free(err);
        }
}

static int qemu_pause(vmm *v, cc_error **ret_err) { return qmp_run((qemu_vm *)v, "stop", ret_err); }
static int qemu_resume(vmm *v, cc_error **ret_err) { return qmp_run((qemu_vm *)v, "cont", ret_err); }

static int qemu_stop(vmm *vv, int timeout_ms, cc_error **ret_err)
{
        qemu_vm *v = (qemu_vm *)vv;
        if (v->proc.pid <= 0)
                return 0;
        int sig = SIGTERM; /* QEMU shuts down cleanly on SIGTERM */
        if (v->q && qemu_alive(vv)) {
                cc_error *err = NULL;
                int wait = timeout_ms > 0 ? CC_MIN(timeout_ms, 2000) : 1000;
                /* quit: QEMU may hang up before it replies; the pidfd decides */
                if (qmp_execute(v->q, "quit", NULL, wait, NULL, &err) == 0 || err->code == -ECONNRESET)
                        sig = 0;
                cc_error_free(err);
        }
        qmp_free(v->q);
        v->q = NULL;
        int r = vmm_proc_terminate(&v->proc, v->pidfd, sig, timeout_ms > 0 ? timeout_ms : 0, v->child);
        if (r < 0)
                return cc_error_set(ret_err, r, "qemu %s: pid %d survived SIGKILL", v->id, (int)v->proc.pid);
        remove_files(v);
        v->running = false;
        return 0;
}

static int qemu_resize(vmm *v, int vcpus, int memory_mib, cc_error **ret_err)
{
        return cc_error_set(ret_err, -EOPNOTSUPP, "qemu: resize needs CPU/memory hotplug (not implemented)");
}

static int qemu_agent_endpoint(vmm *vv, vmm_endpoint *ret, cc_error **ret_err)
{
        qemu_vm *v = (qemu_vm *)vv;
        if (!v->has_ep)
                set_endpoint(v);
        if (!v->has_ep)
                return cc_error_set(ret_err, -ENOENT, "qemu %s: no vsock or virtio-serial device", v->id);
        *ret = v->ep;
        return 0;
}

static int qemu_exit_fd(vmm *v) { return ((qemu_vm *)v)->pidfd; }
static int qemu_pid(vmm *v) { return ((qemu_vm *)v)->proc.pid; }

/* ---- save / load ----------------------------------------------------------------- */

static int qemu_save(vmm *vv, json_object **ret, cc_error **ret_err)
{
        qemu_vm *v = (qemu_vm *)vv;
        if (v->proc.pid <= 0)
                return cc_error_set(ret_err, -ESRCH, "qemu %s: not started", v->id);
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *socks = json_object_new_array();
        if (!o || !socks) {
                json_object_put(socks);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        vmm_save_header(o, SAVE_VERSION, "qemu", v->id, &v->proc, v->run_dir);
        json_object_object_add(o, "qmp", json_object_new_string(v->qmp_path));
        json_object_object_add(o, "console_log", json_object_new_boolean(v->console_log));
        for (char **s = v->sockets; s && *s; s++)
                json_object_array_add(socks, json_object_new_string(*s));
        json_object_object_add(o, "sockets", socks);
        if (v->has_ep) {
                json_object *ep = json_object_new_object();
                if (!ep)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                if (v->ep.kind == VMM_EP_VSOCK) {
                        json_object_object_add(ep, "kind", json_object_new_string("vsock"));
                        json_object_object_add(ep, "cid", json_object_new_int64(v->ep.cid));
                        json_object_object_add(ep, "port", json_object_new_int64(v->ep.port));
                } else {
                        json_object_object_add(ep, "kind", json_object_new_string("unix"));
                        json_object_object_add(ep, "path", json_object_new_string(v->ep.path));
                }
                json_object_object_add(o, "endpoint", ep);
        }
        *ret = TAKE_PTR(o);
        return 0;
}

static int load_endpoint(qemu_vm *v, json_object *ep, cc_error **ret_err)
{
        const char *kind = NULL, *path = NULL;
        int64_t cid = 0, port = 0;
        if (cc_json_get_string(ep, "kind", false, &kind, ret_err) < 0)
                return -EINVAL;
        if (strcmp(kind, "vsock") == 0) {
                if (cc_json_get_int64(ep, "cid", false, &cid, ret_err) < 0 ||
                    cc_json_get_int64(ep, "port", false, &port, ret_err) < 0)
                        return -EINVAL;
                if (cid < 3 || cid >= UINT32_MAX || port <= 0 || port >= UINT32_MAX)
                        return cc_error_set(ret_err, -EINVAL, "endpoint: invalid vsock address");
                v->ep = (vmm_endpoint){ .kind = VMM_EP_VSOCK, .cid = (uint32_t)cid, .port = (uint32_t)port };
        } else if (strcmp(kind, "unix") == 0) {
                if (cc_json_get_string(ep, "path", false, &path, ret_err) < 0)
                        return -EINVAL;
                if (!abs_path_ok(path, sizeof(v->ep.path)))
                        return cc_error_set(ret_err, -EINVAL, "endpoint: invalid path");
                v->ep = (vmm_endpoint){ .kind = VMM_EP_UNIX };
                strcpy(v->ep.path, path);
        } else {
                return cc_error_set(ret_err, -EINVAL, "endpoint: unknown kind");
        }
        v->has_ep = true;
        return 0;
}

static int qemu_load(const vmm_config *c, json_object *saved, vmm **ret, cc_error **ret_err)
{
        cc_error *err = NULL;
        vmm_saved_header h;
        const char *qmp_path = NULL;
        bool console = false;
        qemu_vm *v = NULL;
        int r;
        if ((r = vmm_load_header(saved, &h, &err)) < 0 ||
            (r = cc_json_get_string(saved, "qmp", false, &qmp_path, &err)) < 0 ||
            (r = cc_json_get_bool(saved, "console_log", true, &console, &err)) < 0)
                goto fail;
        if (h.version != SAVE_VERSION || strcmp(h.backend, "qemu") != 0) {
                r = cc_error_set(&err, -EINVAL, "not a version %d qemu record", SAVE_VERSION);
                goto fail;
        }
        if (!token_ok(h.id, 128) || h.pid <= 1 || h.pid > INT_MAX || h.start_time < 0 ||
            !abs_path_ok(h.run_dir, SUN_PATH_MAX - sizeof("/console.log")) || !abs_path_ok(qmp_path, SUN_PATH_MAX)) {
                r = cc_error_set(&err, -EINVAL, "invalid id, pid, start time or path");
                goto fail;
        }
        if (c && c->run_dir && strcmp(c->run_dir, h.run_dir) != 0) {
                r = cc_error_set(&err, -EINVAL, "saved run directory differs from the configured one");
                goto fail;
        }
        vmm_config vc = { .id = h.id, .run_dir = h.run_dir, .kernel = "/", .initrd = "/",
                          .console_log = console };
        r = qemu_create(&vc, (vmm **)&v, &err);
        if (r < 0)
                goto fail;
        free(v->qmp_path);
        v->qmp_path = strdup(qmp_path);
        if (!v->qmp_path) {
                r = cc_error_set(&err, -ENOMEM, "out of memory");
                goto fail;
        }
        json_object *socks = cc_json_get_typed(saved, "sockets", json_type_array);
        size_t n = socks ? json_object_array_length(socks) : 0;
        if (n > QEMU_MAX_DEVICES + 1) {
                r = cc_error_set(&err, -EINVAL, "too many sockets");
                goto fail;
        }
        v->sockets = calloc(n + 1, sizeof(char *));
        if (!v->sockets) {
                r = cc_error_set(&err, -ENOMEM, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(socks, i);
                const char *p = json_object_is_type(s, json_type_string) ? json_object_get_string(s) : NULL;
                if (!abs_path_ok(p, SUN_PATH_MAX)) {
                        r = cc_error_set(&err, -EINVAL, "invalid socket path");
                        goto fail;
                }
                if (!(v->sockets[i] = strdup(p))) {
                        r = cc_error_set(&err, -ENOMEM, "out of memory");
                        goto fail;
                }
        }
        json_object *ep = cc_json_get_typed(saved, "endpoint", json_type_object);
        if (ep && (r = load_endpoint(v, ep, &err)) < 0)
                goto fail;

        v->proc = (cc_proc){ .pid = (pid_t)h.pid, .start_time = (uint64_t)h.start_time };
        if (!cc_proc_alive(&v->proc)) {
                r = cc_error_set(&err, -ESRCH, "qemu pid %d (start time %" PRId64 ") is gone", (int)h.pid,
                                 h.start_time);
                goto fail;
        }
        v->pidfd = cc_proc_pidfd(&v->proc, &err);
        if (v->pidfd < 0) {
                r = v->pidfd;
                v->pidfd = -1;
                goto fail;
        }
        if ((r = qmp_connect(v->qmp_path, QEMU_QMP_TIMEOUT_MS, &v->q, &err)) < 0 ||
            (r = check_status(v, NULL, &err)) < 0)
                goto fail;
        v->running = true;
        *ret = (vmm *)v;
        return 0;
fail:
        vm_free((vmm *)v);
        cc_error_prefix(&err, "re-attach VM");
        return cc_error_propagate(ret_err, err);
}

static void vm_free(vmm *vv)
{
        qemu_vm *v = (qemu_vm *)vv;
        if (!v)
                return;
        qmp_free(v->q);
        if (v->pidfd >= 0)
                close(v->pidfd);
        for (size_t i = 0; i < v->n_devs; i++) {
                free(v->devs[i].path);
                free(v->devs[i].name);
                if (v->devs[i].fd >= 0)
                        close(v->devs[i].fd);
        }
        cc_strv_free(v->sockets);
        clone_close(v);
        free(v->tmpl_ram);
        free(v->tmpl_state);
        free(v->id);
        free(v->run_dir);
        free(v->binary);
        free(v->kernel);
        free(v->initrd);
        free(v->kernel_params);
        free(v->qmp_path);
        free(v->log_path);
        free(v->console_path);
        free(v);
}

const vmm_ops vmm_qemu_ops = {
        .name = "qemu",
        .probe = qemu_probe,
        .create = qemu_create,
        .add_device = qemu_add_device,
        .start = qemu_start,
        .stop = qemu_stop,
        .pause = qemu_pause,
        .resume = qemu_resume,
        .resize = qemu_resize,
        .agent_endpoint = qemu_agent_endpoint,
        .exit_fd = qemu_exit_fd,
        .alive = qemu_alive,
        .pid = qemu_pid,
        .template_save = qemu_template_save,
        .save = qemu_save,
        .load = qemu_load,
        .free = vm_free,
};
