/* SPDX-License-Identifier: Apache-2.0 */
/* VMM drivers: a small ops table, one backend per file (runtime/vmm-qemu.c
 * today; a `host` backend boots nothing for host-mode pods; a mock backend
 * for unit tests). Optional ops may be NULL; the vmm_* wrappers then return
 * -EOPNOTSUPP.
 *
 * Life cycle: create (nothing runs yet) → add_device* → start (the VMM
 * process runs and the guest boots; returns without waiting for the agent)
 * → ... → stop → free. A running VMM outlives cocoond: save() describes it as
 * JSON (pids + start times, sockets) and load() re-attaches after a restart.
 * Every process is recorded as pid + start time (common/spawn.h), watched
 * through a pidfd. A failed create/start leaves no process, socket or file. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

typedef struct vmm vmm;

typedef enum vmm_accel {
        VMM_ACCEL_AUTO, /* kvm when /dev/kvm is usable, else tcg */
        VMM_ACCEL_KVM,
        VMM_ACCEL_TCG,
} vmm_accel;

typedef enum vmm_device_kind {
        VMM_DEV_FS,     /* virtio-fs: a vhost-user socket served by virtiofsd */
        VMM_DEV_NET,    /* virtio-net on a tap fd */
        VMM_DEV_BLOCK,  /* virtio-blk on a file or device */
        VMM_DEV_VSOCK,  /* vhost-vsock with a guest cid */
        VMM_DEV_SERIAL, /* virtio-serial port backed by a host unix socket */
} vmm_device_kind;

typedef struct vmm_device {
        vmm_device_kind kind;
        union {
                struct {
                        const char *tag;         /* mount tag in the guest */
                        const char *socket_path; /* virtiofsd's vhost-user socket */
                } fs;
                struct {
                        int tap_fd;      /* handed to the VMM; the caller keeps its copy */
                        char mac[18];    /* "aa:bb:cc:dd:ee:ff" */
                        int mtu;
                } net;
                struct {
                        const char *path;
                        bool readonly;
                } block;
                struct {
                        uint32_t guest_cid;
                } vsock;
                struct {
                        const char *name;        /* virtserialport name, e.g. "agent.0" */
                        const char *socket_path; /* host side, the VMM listens */
                } serial;
        };
} vmm_device;

/* How the VM gets going (the QEMU backend; others only boot).
 * VMM_TEMPLATE_MAKE boots a VM to be saved as a template (vmm_template_save):
 * its RAM in the file template_ram, a PCIe root port to hot-add into, no
 * virtio-fs device (QEMU 7.2 cannot save one), a NIC without a backend.
 * VMM_TEMPLATE_CLONE starts from that template instead of booting: a copy of
 * its RAM, its device state loaded from template_state, then the virtio-fs
 * device hot-added. Template and clone must have the same size and the same
 * devices other than virtio-fs (one agent port, at most one NIC). */
typedef enum vmm_boot_mode {
        VMM_BOOT,
        VMM_TEMPLATE_MAKE,
        VMM_TEMPLATE_CLONE,
} vmm_boot_mode;

typedef struct vmm_config {
        const char *id;            /* sandbox id (names sockets, logs) */
        const char *run_dir;       /* per-pod directory for sockets and the console log */
        const char *binary;        /* e.g. /usr/bin/qemu-system-x86_64 */
        const char *kernel;
        const char *initrd;
        const char *kernel_params; /* appended to the backend's lean command line */
        const char *machine;       /* "microvm" (or "q35") */
        vmm_accel accel;
        int tcg_tb_size_mib;
        int vcpus;
        int memory_mib;
        bool console_log;          /* guest console → <run_dir>/console.log */
        vmm_boot_mode boot_mode;
        const char *template_ram;   /* VMM_TEMPLATE_MAKE, _CLONE */
        const char *template_state; /* VMM_TEMPLATE_CLONE */
} vmm_config;

/* Where the agent listens, from the host's side. */
typedef struct vmm_endpoint {
        enum { VMM_EP_UNIX, VMM_EP_VSOCK } kind;
        char path[108];   /* VMM_EP_UNIX: the virtio-serial socket */
        uint32_t cid;     /* VMM_EP_VSOCK */
        uint32_t port;
} vmm_endpoint;

typedef struct vmm_ops {
        const char *name;
        /* Checks the host can run this backend (binary, kernel, accel). */
        int (*probe)(const vmm_config *c, cc_error **ret_err);
        int (*create)(const vmm_config *c, vmm **ret, cc_error **ret_err);
        int (*add_device)(vmm *v, const vmm_device *d, cc_error **ret_err);
        int (*start)(vmm *v, cc_error **ret_err);
        /* Orderly stop (ACPI/agent already asked the guest), then SIGKILL
         * after timeout_ms; reaps; idempotent. */
        int (*stop)(vmm *v, int timeout_ms, cc_error **ret_err);
        int (*pause)(vmm *v, cc_error **ret_err);
        int (*resume)(vmm *v, cc_error **ret_err);
        int (*resize)(vmm *v, int vcpus, int memory_mib, cc_error **ret_err);
        int (*agent_endpoint)(vmm *v, vmm_endpoint *ret, cc_error **ret_err);
        /* A pidfd-like fd that becomes readable when the VMM exits; owned by v. */
        int (*exit_fd)(vmm *v);
        /* Is the very VMM process (pid + start time) still alive? */
        bool (*alive)(vmm *v);
        /* Process id of the VMM (for PodSandboxStatus verbose info). */
        int (*pid)(vmm *v);
        int (*save)(vmm *v, json_object **ret, cc_error **ret_err);
        /* VMM_TEMPLATE_MAKE only: pauses the VM, writes its device state to
         * state_path (RAM stays in template_ram) and stops it. */
        int (*template_save)(vmm *v, const char *state_path, cc_error **ret_err);
        int (*load)(const vmm_config *c, json_object *saved, vmm **ret, cc_error **ret_err);
        /* Frees memory; does not stop a running VMM (see stop). */
        void (*free)(vmm *v);
} vmm_ops;

extern const vmm_ops vmm_qemu_ops;
extern const vmm_ops vmm_host_ops;

/* Wrappers: -EOPNOTSUPP for NULL ops. */
int vmm_create(const vmm_ops *ops, const vmm_config *c, vmm **ret, cc_error **ret_err);
int vmm_add_device(vmm *v, const vmm_device *d, cc_error **ret_err);
int vmm_start(vmm *v, cc_error **ret_err);
int vmm_stop(vmm *v, int timeout_ms, cc_error **ret_err);
int vmm_pause(vmm *v, cc_error **ret_err);
int vmm_resume(vmm *v, cc_error **ret_err);
int vmm_agent_endpoint(vmm *v, vmm_endpoint *ret, cc_error **ret_err);
int vmm_template_save(vmm *v, const char *state_path, cc_error **ret_err);
void vmm_free(vmm *v);
const vmm_ops *vmm_get_ops(vmm *v);

/* Every backend's vmm struct starts with this header. */
typedef struct vmm_base {
        const vmm_ops *ops;
} vmm_base;

/* Host facts the backends share. */
bool vmm_kvm_usable(void);
/* The host TSC frequency in kHz (for tsc_early_khz under TCG), 0 if unknown. */
uint64_t vmm_host_tsc_khz(void);

/* Boot options a guest kernel image understands, found by their parameter
 * names in the image (an uncompressed vmlinux); remembered per file (path,
 * inode, size, mtime). 0 when the image cannot be read. */
enum {
        VMM_KERNEL_MMIO_CMDLINE = 1 << 0, /* virtio_mmio.device=: devices without ACPI */
        VMM_KERNEL_LAPIC_KHZ = 1 << 1,    /* lapic_timer_khz= (guest/patches/0001) */
        VMM_KERNEL_KEEP_INITMEM = 1 << 2, /* keep_initmem (guest/patches/0002) */
        VMM_KERNEL_PCIE_LINK_DELAY = 1 << 3, /* pcie_link_delay= (guest/patches/0003) */
};
unsigned vmm_kernel_features(const char *path);
