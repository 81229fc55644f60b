/* SPDX-License-Identifier: Apache-2.0 */
/* Templates ([vm] template): pods start as copies of a booted VM instead
 * of booting their own.
 *
 * The first VM pod of a size (vCPUs, memory) has a template of that size
 * built in the background (rt_template_kick; at most RT_TEMPLATE_MAX sizes,
 * and a cocoond that never runs a VM pod spends nothing): one VM booted
 * with VMM_TEMPLATE_MAKE (its RAM in <root>/template/<V>-<M>/ram, a PCIe
 * root port, no virtio-fs device, a NIC without a backend); once its agent
 * answers, cocoond hangs up and saves the device state (.../state, ~150 KB;
 * the RAM is already in the file), and the template's QEMU exits. A later
 * pod of that size with one network interface gets VMM_TEMPLATE_CLONE
 * instead of a boot (rt_pod_vm_start): its QEMU loads that state over its
 * own copy of the RAM, the pod's virtiofsd is hot-added, and once its agent
 * answers the guest's clock is set and its CRNG reseeded (rt_pod_vm_dial):
 * every copy resumes with the template's.
 *
 * A template's QEMU dies with the thread that builds it (parent-death
 * signal); one a killed cocoond left anyway is found by its command line at
 * the next start and stopped. The files are removed at exit; running copies
 * do not need them (each has its own RAM). */
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
        if (asprintf(&qmp, "path=%s/", rt->tmpl_run_root) < 0)
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
                        ours |= strstr(a, qmp) != NULL && strstr(a, "/qmp.sock,") != NULL;
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

static int build(rt_runtime *rt, rt_template *t, cc_error **ret_err)
{
        Runtime__V1__PodSandboxConfig none = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        rt_pod *p = rt_pod_new();
        if (!p)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        p->config = &none;
        p->mode = RT_POD_VM;
        snprintf(p->id, sizeof(p->id), "template");
        p->run_dir = t->run_dir;
        p->vcpus = t->vcpus;
        p->memory_mib = t->memory_mib;
        vmm_config vc;
        rt_vmm_config(rt, p, &vc);
        vc.boot_mode = VMM_TEMPLATE_MAKE;
        vc.template_ram = t->ram;
        vmm *v = NULL;
        int r = vmm_create(rt->vm_ops, &vc, &v, ret_err); /* copies what vc points to in p */
        p->config = NULL;
        p->run_dir = NULL;
        rt_pod_free(p);
        if (r < 0)
                return r;

        _cleanup_free_ char *agent_sock = NULL;
        if (asprintf(&agent_sock, "%s/agent.sock", t->run_dir) < 0)
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        rt_agent *agent = NULL;
        if (r < 0 || (r = cc_mkdir_p(t->run_dir, 0700, ret_err)) < 0 ||
            (r = cc_mkdir_p(t->dir, 0700, ret_err)) < 0)
                goto fail;
        /* a new inode each time: copies starting from a discarded template
         * keep reading the files they opened */
        (void)unlink(t->ram);
        (void)unlink(t->state);
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
        if ((r = vmm_template_save(v, t->state, ret_err)) < 0)
                goto fail;
        vmm_free(v);
        pthread_mutex_lock(&rt->lock);
        t->building = false;
        t->ready = !rt->closing;
        pthread_mutex_unlock(&rt->lock);
        return 0;
fail:
        rt_agent_unref(agent);
        (void)vmm_stop(v, 0, NULL);
        vmm_free(v);
        return r;
}

typedef struct build_arg {
        rt_runtime *rt;
        rt_template *t;
} build_arg;

static void *template_main(void *arg)
{
        build_arg a = *(build_arg *)arg;
        free(arg);
        rt_runtime *rt = a.rt;
        rt_template *t = a.t;
        _cleanup_error_ cc_error *err = NULL;
        int64_t t0 = rt_now_ns();
        if (build(rt, t, &err) < 0) {
                /* not retried: what failed once (no space, a guest that
                 * does not come up) fails again */
                log_warn("template %d vCPU %d MiB: %s; pods of that size boot their VMs", t->vcpus,
                         t->memory_mib, err->msg);
                (void)cc_rm_rf(t->dir, NULL);
                pthread_mutex_lock(&rt->lock);
                t->building = false;
                t->failed = true;
                pthread_mutex_unlock(&rt->lock);
        } else {
                log_info("template %d vCPU %d MiB: ready in %.1f s; pods of that size start from it", t->vcpus,
                         t->memory_mib, (double)(rt_now_ns() - t0) / 1e9);
        }
        (void)cc_rm_rf(t->run_dir, NULL);
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
        if (asprintf(&rt->tmpl_run_root, "%s/template", rt->cfg->paths.state) < 0 ||
            asprintf(&rt->tmpl_root, "%s/template", rt->cfg->paths.root) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        sweep(rt);
        (void)cc_rm_rf(rt->tmpl_run_root, NULL);
        (void)cc_rm_rf(rt->tmpl_root, NULL);
        return 0;
}

/* The template of that size, under lock; NULL if none. */
static rt_template *find(rt_runtime *rt, int vcpus, int memory_mib)
{
        for (size_t i = 0; i < rt->n_tmpls; i++)
                if (rt->tmpls[i].vcpus == vcpus && rt->tmpls[i].memory_mib == memory_mib)
                        return &rt->tmpls[i];
        return NULL;
}

void rt_template_discard(rt_runtime *rt, int vcpus, int memory_mib)
{
        pthread_mutex_lock(&rt->lock);
        rt_template *t = find(rt, vcpus, memory_mib);
        if (t && t->ready && ++t->discards > TEMPLATE_MAX_DISCARDS)
                log_warn("template %d vCPU %d MiB: discarded %d times; pods of that size boot their VMs from now on",
                         vcpus, memory_mib, t->discards);
        if (t)
                t->ready = false;
        pthread_mutex_unlock(&rt->lock);
}

void rt_template_kick(rt_runtime *rt, int vcpus, int memory_mib)
{
        if (!rt->tmpl_root)
                return;
        pthread_mutex_lock(&rt->lock);
        rt_template *t = find(rt, vcpus, memory_mib);
        if (!t && rt->n_tmpls < RT_TEMPLATE_MAX) {
                rt_template n = { .vcpus = vcpus, .memory_mib = memory_mib };
                if (asprintf(&n.run_dir, "%s/%d-%d", rt->tmpl_run_root, vcpus, memory_mib) >= 0 &&
                    asprintf(&n.dir, "%s/%d-%d", rt->tmpl_root, vcpus, memory_mib) >= 0 &&
                    asprintf(&n.ram, "%s/ram", n.dir) >= 0 && asprintf(&n.state, "%s/state", n.dir) >= 0) {
                        rt->tmpls[rt->n_tmpls] = n;
                        t = &rt->tmpls[rt->n_tmpls++];
                } else {
                        free(n.run_dir);
                        free(n.dir);
                        free(n.ram);
                        free(n.state);
                }
        }
        bool start = t && !t->building && !t->ready && !t->failed && !rt->closing &&
                     t->discards <= TEMPLATE_MAX_DISCARDS;
        if (start)
                t->building = true;
        pthread_mutex_unlock(&rt->lock);
        if (!start)
                return;
        _cleanup_error_ cc_error *err = NULL;
        build_arg *a = malloc(sizeof(*a));
        if (a)
                *a = (build_arg){ rt, t };
        if (!a || rt_thread_start(rt, template_main, a, &err) < 0) {
                log_warn("template: %s", err ? err->msg : "out of memory");
                free(a);
                pthread_mutex_lock(&rt->lock);
                t->building = false;
                pthread_mutex_unlock(&rt->lock);
        }
}

bool rt_template_for(rt_runtime *rt, int vcpus, int memory_mib, const char **ret_ram, const char **ret_state)
{
        pthread_mutex_lock(&rt->lock);
        rt_template *t = find(rt, vcpus, memory_mib);
        bool ok = t && t->ready;
        if (ok) {
                /* the strings live as long as rt */
                *ret_ram = t->ram;
                *ret_state = t->state;
        }
        pthread_mutex_unlock(&rt->lock);
        return ok;
}

json_object *rt_runtime_template_status(rt_runtime *rt)
{
        json_object *o = json_object_new_object(), *a = json_object_new_array();
        if (!o || !a) {
                json_object_put(o);
                json_object_put(a);
                return NULL;
        }
        pthread_mutex_lock(&rt->lock);
        json_object_object_add(o, "enabled", json_object_new_boolean(rt->tmpl_root != NULL));
        for (size_t i = 0; i < rt->n_tmpls; i++) {
                const rt_template *t = &rt->tmpls[i];
                json_object *e = json_object_new_object();
                if (!e)
                        continue;
                json_object_object_add(e, "vcpus", json_object_new_int(t->vcpus));
                json_object_object_add(e, "memoryMiB", json_object_new_int(t->memory_mib));
                json_object_object_add(e, "state", json_object_new_string(t->ready      ? "ready"
                                                                          : t->building ? "building"
                                                                          : t->failed   ? "failed"
                                                                                        : "discarded"));
                json_object_array_add(a, e);
        }
        pthread_mutex_unlock(&rt->lock);
        json_object_object_add(o, "templates", a);
        return o;
}

void rt_template_remove(rt_runtime *rt)
{
        if (rt->tmpl_run_root)
                (void)cc_rm_rf(rt->tmpl_run_root, NULL);
        if (rt->tmpl_root)
                (void)cc_rm_rf(rt->tmpl_root, NULL);
        for (size_t i = 0; i < rt->n_tmpls; i++) {
                rt_template *t = &rt->tmpls[i];
                free(t->run_dir);
                free(t->dir);
                free(t->ram);
                free(t->state);
        }
        rt->n_tmpls = 0;
        free(rt->tmpl_run_root);
        free(rt->tmpl_root);
        rt->tmpl_run_root = rt->tmpl_root = NULL;
}
