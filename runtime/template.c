/* SPDX-License-Identifier: Apache-2.0 */
/* The template ([vm] template): pods start as copies of one booted VM
 * instead of booting their own.
 *
 * When the first VM pod starts (rt_template_kick: a cocoond that never runs
 * one spends nothing on it), cocoond boots in the background one VM of the
 * default size (VMM_TEMPLATE_MAKE: its
 * RAM in <root>/template/ram, a PCIe root port, no virtio-fs device, a NIC
 * without a backend), waits until its agent answers, hangs up, and saves the
 * device state (<root>/template/state, ~150 KB; the RAM is already in the
 * file); the template's QEMU then exits. A pod of that size with one network
 * interface gets VMM_TEMPLATE_CLONE instead of a boot (rt_pod_vm_start): its
 * QEMU loads that state over its own copy of the RAM, the pod's virtiofsd is
 * hot-added, and once its agent answers the guest's clock is set and its
 * CRNG reseeded (rt_pod_vm_dial): every copy resumes with the template's.
 *
 * A cocoond killed in the middle of building it leaves the template's QEMU
 * running: the next one finds it by its command line and stops it. The
 * files are removed at exit; running copies do not need them (each has its
 * own RAM). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/spawn.h"
#include "runtime/agent.h"
#include "runtime/internal.h"
#include "runtime/vmm-proc.h"
#include "runtime/vmm.h"

/* a template that copies could not start from (rt_template_discard) is
 * built again, this many times at most */
#define TEMPLATE_MAX_DISCARDS 3

/* Stops the template QEMU a killed cocoond left running, if any: found by
 * its command line (its name and its QMP socket under this cocoond's state
 * directory), as it may have been killed before anything was recorded. */
static void sweep(rt_runtime *rt)
{
        _cleanup_free_ char *qmp = NULL;
        if (asprintf(&qmp, "path=%s/qmp.sock,", rt->tmpl_run_dir) < 0)
                return;
        _cleanup_closedir_ DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                if (*end || pid <= 1 || pid == getpid())
                        continue;
                char path[64], buf[8192];
                snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
                if (n <= 0)
                        continue;
                buf[n] = 0;
                bool named = false, ours = false;
                for (char *a = buf; a < buf + n; a += strlen(a) + 1) {
                        named |= strcmp(a, "cocoon-template") == 0;
                        ours |= strstr(a, qmp) != NULL;
                }
                if (!named || !ours)
                        continue;
                cc_proc proc = { .pid = (pid_t)pid };
                if (cc_proc_start_time(pid, &proc.start_time) < 0)
                        continue;
                log_info("template: stopping the template VM the previous cocoond left (pid %ld)", pid);
                (void)vmm_proc_terminate(&proc, -1, SIGKILL, 5000, false);
        }
}

static int build(rt_runtime *rt, cc_error **ret_err)
{
        /* the default size: what a pod without limits gets */
        Runtime__V1__PodSandboxConfig none = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        rt_pod *p = rt_pod_new();
        if (!p)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        p->config = &none;
        p->mode = RT_POD_VM;
        snprintf(p->id, sizeof(p->id), "template");
        p->run_dir = rt->tmpl_run_dir;
        rt_pod_vm_size(rt, p);
        vmm_config vc;
        rt_vmm_config(rt, p, &vc);
        vc.boot_mode = VMM_TEMPLATE_MAKE;
        vc.template_ram = rt->tmpl_ram;
        int vcpus = p->vcpus, memory_mib = p->memory_mib;
        vmm *v = NULL;
        int r = vmm_create(rt->vm_ops, &vc, &v, ret_err); /* copies what vc points to in p */
        p->config = NULL;
        p->run_dir = NULL;
        rt_pod_free(p);
        if (r < 0)
                return r;

        _cleanup_free_ char *agent_sock = NULL;
        if (asprintf(&agent_sock, "%s/agent.sock", rt->tmpl_run_dir) < 0)
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        rt_agent *agent = NULL;
        if (r < 0 || (r = cc_mkdir_p(rt->tmpl_run_dir, 0700, ret_err)) < 0 ||
            (r = cc_mkdir_p(rt->tmpl_dir, 0700, ret_err)) < 0)
                goto fail;
        /* a new inode each time: copies starting from a discarded template
         * keep reading the files they opened */
        (void)unlink(rt->tmpl_ram);
        (void)unlink(rt->tmpl_state);
        vmm_device ser = { .kind = VMM_DEV_SERIAL };
        ser.serial.name = RT_AGENT_PORT;
        ser.serial.socket_path = agent_sock;
        vmm_device nd = { .kind = VMM_DEV_NET };
        nd.net.tap_fd = -1;
        unsigned char m[6];
        if (getrandom(m, sizeof(m), 0) != sizeof(m)) {
                r = cc_error_errno(ret_err, "getrandom");
                goto fail;
        }
        m[0] = (unsigned char)((m[0] & 0xfe) | 0x02); /* unicast, locally administered */
        snprintf(nd.net.mac, sizeof(nd.net.mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                 m[5]);
        if ((r = vmm_add_device(v, &ser, ret_err)) < 0 || (r = vmm_add_device(v, &nd, ret_err)) < 0 ||
            (r = vmm_start(v, ret_err)) < 0)
                goto fail;
        vmm_endpoint ep;
        if ((r = vmm_agent_endpoint(v, &ep, ret_err)) < 0)
                goto fail;
        {
                const vmm_ops *ops = vmm_get_ops(v);
                _cleanup_close_ int cancel = rt_dial_cancel_fd(rt, ops->exit_fd ? ops->exit_fd(v) : -1);
                if ((r = rt_agent_dial(&ep, rt->agent_timeout_ms, cancel, &agent, ret_err)) < 0) {
                        cc_error_prefix(ret_err, "agent");
                        goto fail;
                }
        }
        /* hang up, and let the agent go back to waiting for a host: each
         * copy resumes there and serves its pod's cocoond */
        rt_agent_unref(TAKE_PTR(agent));
        usleep(20 * 1000);
        if ((r = vmm_template_save(v, rt->tmpl_state, ret_err)) < 0)
                goto fail;
        vmm_free(v);
        pthread_mutex_lock(&rt->lock);
        rt->tmpl_building = false;
        rt->tmpl_vcpus = vcpus;
        rt->tmpl_memory_mib = memory_mib;
        rt->tmpl_ready = !rt->closing;
        pthread_mutex_unlock(&rt->lock);
        return 0;
fail:
        rt_agent_unref(agent);
        (void)vmm_stop(v, 0, NULL);
        vmm_free(v);
        return r;
}

static void *template_main(void *arg)
{
        rt_runtime *rt = arg;
        _cleanup_error_ cc_error *err = NULL;
        int64_t t0 = rt_now_ns();
        if (build(rt, &err) < 0) {
                /* not retried: what failed once (a kernel without PCIe
                 * hotplug, no space) fails again */
                log_warn("template: %s; pods boot their VMs", err->msg);
                (void)cc_rm_rf(rt->tmpl_dir, NULL);
                pthread_mutex_lock(&rt->lock);
                rt->tmpl_building = false;
                rt->tmpl_failed = true;
                pthread_mutex_unlock(&rt->lock);
        } else {
                log_info("template: ready in %.1f s (%d vCPU, %d MiB); pods of that size start from it",
                         (double)(rt_now_ns() - t0) / 1e9, rt->tmpl_vcpus, rt->tmpl_memory_mib);
        }
        (void)cc_rm_rf(rt->tmpl_run_dir, NULL);
        rt_thread_done(rt);
        return NULL;
}

int rt_template_start(rt_runtime *rt, cc_error **ret_err)
{
        if (!rt->cfg->vm.template_start || !rt->vm_ops || !rt->vm_ops->template_save)
                return 0;
        /* Copies need a guest that takes a hot-plugged virtio-pci device:
         * cocoon's kernel (`make guest`, marked by its pcie_link_delay
         * option). Debian's has virtio-pci as a module the initrd does not
         * load: its copies would never see their virtio-fs device. */
        if (!(vmm_kernel_features(rt->cfg->vm.kernel) & VMM_KERNEL_PCIE_LINK_DELAY)) {
                log_info("template: the guest kernel %s is not cocoon's (no pcie_link_delay option): pods boot "
                         "their VMs", rt->cfg->vm.kernel);
                return 0;
        }
        if (asprintf(&rt->tmpl_run_dir, "%s/template", rt->cfg->paths.state) < 0 ||
            asprintf(&rt->tmpl_dir, "%s/template", rt->cfg->paths.root) < 0 ||
            asprintf(&rt->tmpl_ram, "%s/ram", rt->tmpl_dir) < 0 ||
            asprintf(&rt->tmpl_state, "%s/state", rt->tmpl_dir) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        sweep(rt);
        (void)cc_rm_rf(rt->tmpl_run_dir, NULL);
        (void)cc_rm_rf(rt->tmpl_dir, NULL);
        return 0;
}

void rt_template_discard(rt_runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        if (rt->tmpl_ready && ++rt->tmpl_discards > TEMPLATE_MAX_DISCARDS)
                log_warn("template: discarded %d times; pods boot their VMs from now on", rt->tmpl_discards);
        rt->tmpl_ready = false;
        pthread_mutex_unlock(&rt->lock);
}

void rt_template_kick(rt_runtime *rt)
{
        if (!rt->tmpl_dir)
                return;
        pthread_mutex_lock(&rt->lock);
        bool start = !rt->tmpl_building && !rt->tmpl_ready && !rt->closing &&
                     rt->tmpl_discards <= TEMPLATE_MAX_DISCARDS && !rt->tmpl_failed;
        rt->tmpl_building |= start;
        pthread_mutex_unlock(&rt->lock);
        _cleanup_error_ cc_error *err = NULL;
        if (start && rt_thread_start(rt, template_main, rt, &err) < 0) {
                log_warn("template: %s", err->msg);
                pthread_mutex_lock(&rt->lock);
                rt->tmpl_building = false;
                pthread_mutex_unlock(&rt->lock);
        }
}

bool rt_template_for(rt_runtime *rt, int vcpus, int memory_mib, const char **ret_ram, const char **ret_state)
{
        pthread_mutex_lock(&rt->lock);
        bool ok = rt->tmpl_ready && rt->tmpl_vcpus == vcpus && rt->tmpl_memory_mib == memory_mib;
        pthread_mutex_unlock(&rt->lock);
        if (ok) {
                *ret_ram = rt->tmpl_ram;
                *ret_state = rt->tmpl_state;
        }
        return ok;
}

void rt_runtime_template_status(rt_runtime *rt, bool *ret_enabled, bool *ret_ready)
{
        pthread_mutex_lock(&rt->lock);
        *ret_enabled = rt->tmpl_dir != NULL;
        *ret_ready = rt->tmpl_ready;
        pthread_mutex_unlock(&rt->lock);
}

void rt_template_remove(rt_runtime *rt)
{
        rt->tmpl_ready = false;
        if (rt->tmpl_run_dir)
                (void)cc_rm_rf(rt->tmpl_run_dir, NULL);
        if (rt->tmpl_dir)
                (void)cc_rm_rf(rt->tmpl_dir, NULL);
        free(rt->tmpl_run_dir);
        free(rt->tmpl_dir);
        free(rt->tmpl_ram);
        free(rt->tmpl_state);
        rt->tmpl_run_dir = rt->tmpl_dir = rt->tmpl_ram = rt->tmpl_state = NULL;
}
