/* SPDX-License-Identifier: Apache-2.0 */
/* A pod's machine: virtiofsd + the VMM (or, in host mode, the host backend
 * that runs a host-side cocoon-agent), the agent connection, its re-dial
 * after a cocoond restart or a lost connection, and the OOM listener. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/undo.h"
#include "runtime/internal.h"

#define MIB (1024 * 1024)

const vmm_ops *rt_ops_by_name(rt_runtime *rt, const char *name)
{
        if (rt->vm_ops && strcmp(rt->vm_ops->name, name) == 0)
                return rt->vm_ops;
        if (rt->host_ops && strcmp(rt->host_ops->name, name) == 0)
                return rt->host_ops;
        if (strcmp(vmm_qemu_ops.name, name) == 0)
                return &vmm_qemu_ops;
        if (strcmp(vmm_host_ops.name, name) == 0)
                return &vmm_host_ops;
        return NULL;
}

static int dup_cloexec(int fd)
{
        return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static vmm_accel accel_of(cc_config_accel a)
{
        switch (a) {
        case CC_CONFIG_ACCEL_KVM: return VMM_ACCEL_KVM;
        case CC_CONFIG_ACCEL_TCG: return VMM_ACCEL_TCG;
        default: return VMM_ACCEL_AUTO;
        }
}

void rt_vmm_config(rt_runtime *rt, rt_pod *p, vmm_config *c)
{
        const cc_config *cfg = rt->cfg;
        memset(c, 0, sizeof(*c));
        c->id = p->id;
        c->run_dir = p->run_dir;
        if (p->mode == RT_POD_HOST) {
                c->binary = cfg->runtime.host_agent;
                c->kernel_params = cc_log_enabled(CC_LOG_DEBUG) ? "log_level=debug" : "";
                return;
        }
        c->binary = cfg->vm.qemu;
        c->kernel = cfg->vm.kernel;
        c->initrd = cfg->vm.initrd;
        c->kernel_params = cfg->vm.kernel_params;
        c->machine = cfg->vm.machine;
        c->accel = accel_of(cfg->vm.accel);
        c->tcg_tb_size_mib = (int)cfg->vm.tcg_tb_size_mib;
        c->vcpus = p->vcpus;
        c->memory_mib = p->memory_mib;
        c->console_log = cfg->vm.console_log;
}

/* vCPUs and memory from LinuxPodSandboxConfig.resources (+ overhead) within
 * the configured bounds; the defaults when the pod sets no limits. */
void rt_pod_vm_size(rt_runtime *rt, rt_pod *p)
{
        const cc_config *cfg = rt->cfg;
        const Runtime__V1__LinuxPodSandboxConfig *lx = p->config->linux;
        const Runtime__V1__LinuxContainerResources *res = lx ? lx->resources : NULL;
        const Runtime__V1__LinuxContainerResources *ovh = lx ? lx->overhead : NULL;
        int64_t vcpus = cfg->vm.default_vcpus, mem = cfg->vm.default_memory_mib;
        if (res && res->cpu_quota > 0 && res->cpu_period > 0)
                vcpus = (res->cpu_quota + res->cpu_period - 1) / res->cpu_period;
        if (res && res->memory_limit_in_bytes > 0)
                mem = (res->memory_limit_in_bytes + MIB - 1) / MIB;
        if (ovh && ovh->cpu_quota > 0 && ovh->cpu_period > 0)
                vcpus += (ovh->cpu_quota + ovh->cpu_period - 1) / ovh->cpu_period;
        if (ovh && ovh->memory_limit_in_bytes > 0)
                mem += (ovh->memory_limit_in_bytes + MIB - 1) / MIB;
        mem += cfg->vm.memory_overhead_mib;
        p->vcpus = (int)CC_MAX(1, CC_MIN(vcpus, cfg->vm.max_vcpus));
        p->memory_mib = (int)CC_MAX(64, CC_MIN(mem, cfg->vm.max_memory_mib));
}

/* An fd for rt_agent_dial's cancel_fd that turns readable when the VMM exits
 * or the runtime closes (an epoll set over both is readable when either is);
 * -1 if it cannot be made (then the dial runs to its timeout). */
int rt_dial_cancel_fd(rt_runtime *rt, int exit_fd)
{
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                return exit_fd >= 0 ? dup_cloexec(exit_fd) : -1;
        struct epoll_event ev = { .events = EPOLLIN };
        if (exit_fd >= 0)
                epoll_ctl(ep, EPOLL_CTL_ADD, exit_fd, &ev);
        if (rt->wake_fd >= 0)
                epoll_ctl(ep, EPOLL_CTL_ADD, rt->wake_fd, &ev);
        return ep;
}

/* ---- boot ------------------------------------------------------------------------- */

static void undo_vfsd(void *arg)
{
        rt_pod *p = arg;
        if (p->vfsd) {
                (void)virtiofsd_stop(p->vfsd, 2000, NULL);
                virtiofsd_free(p->vfsd);
                p->vfsd = NULL;
        }
        rt_json_clear(&p->vfsd_j);
}

static void undo_vmm(void *arg)
{
        rt_pod *p = arg;
        if (p->vmm) {
                (void)vmm_stop(p->vmm, 0, NULL);
                vmm_free(p->vmm);
                p->vmm = NULL;
        }
        rt_json_clear(&p->vmm_j);
}

static void undo_agent(void *arg)
{
        rt_pod *p = arg;
        rt_agent_unref(p->agent);
        p->agent = NULL;
}

static int64_t mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The pod's VMM, created (nothing runs yet) with its devices. */
static int vm_create(rt_pod *p, const vmm_ops *ops, const vmm_config *vc, cc_error **ret_err)
{
        if (vmm_create(ops, vc, &p->vmm, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s", ops->name);
        if (p->mode == RT_POD_VM) {
                _cleanup_free_ char *agent_sock = NULL;
                if (asprintf(&agent_sock, "%s/agent.sock", p->run_dir) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                vmm_device fs = { .kind = VMM_DEV_FS };
                fs.fs.tag = RT_SHARE_TAG;
                fs.fs.socket_path = virtiofsd_socket_path(p->vfsd);
                vmm_device ser = { .kind = VMM_DEV_SERIAL };
                ser.serial.name = RT_AGENT_PORT;
                ser.serial.socket_path = agent_sock;
                if (vmm_add_device(p->vmm, &fs, ret_err) < 0 || vmm_add_device(p->vmm, &ser, ret_err) < 0)
                        return cc_error_prefix(ret_err, "%s", ops->name);
                /* vsock when the host has it: the agent then listens there and
                 * the endpoint is vsock (the serial port stays as a console
                 * for nothing else). The CID is random in [3, 2^32-16): a
                 * clash with another VM makes QEMU fail to start, reported
                 * like any start failure. Untested on the CI machines (no
                 * /dev/vhost-vsock). */
                if (!p->from_template && access("/dev/vhost-vsock", R_OK | W_OK) == 0) {
                        uint32_t cid = 0;
                        if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid))
                                return cc_error_errno(ret_err, "getrandom");
                        vmm_device vs = { .kind = VMM_DEV_VSOCK };
                        vs.vsock.guest_cid = 3 + cid % (UINT32_MAX - 19);
                        if (vmm_add_device(p->vmm, &vs, ret_err) < 0)
                                return cc_error_prefix(ret_err, "%s: vsock", ops->name);
                }
                for (size_t i = 0; p->net && i < p->net->n_nics; i++) {
                        const rt_pod_nic *nic = &p->net->nics[i];
                        vmm_device nd = { .kind = VMM_DEV_NET };
                        nd.net.tap_fd = nic->tap_fd;
                        snprintf(nd.net.mac, sizeof(nd.net.mac), "%s", nic->mac);
                        nd.net.mtu = (int)nic->mtu;
                        if (vmm_add_device(p->vmm, &nd, ret_err) < 0)
                                return cc_error_prefix(ret_err, "%s: NIC %s", ops->name, nic->tap);
                }
        }
        return 0;
}

int rt_pod_vm_start(rt_runtime *rt, rt_pod *p, cc_undo *undo, cc_error **ret_err)
{
        const cc_config *cfg = rt->cfg;
        /* phase times for the debug log: where a slow pod start goes */
        int64_t t0 = mono_us(), t_fs = t0, t_vmm;
        if (p->mode == RT_POD_VM) {
                rt_pod_vm_size(rt, p);
                virtiofsd_config vc = {
                        .binary = cfg->vm.virtiofsd,
                        .shared_dir = p->share_dir,
                        .run_dir = p->run_dir,
                };
                if (virtiofsd_start(&vc, &p->vfsd, ret_err) < 0)
                        return cc_error_prefix(ret_err, "virtiofsd");
                cc_undo_push(undo, undo_vfsd, p, NULL);
                if (virtiofsd_save(p->vfsd, &p->vfsd_j, ret_err) < 0)
                        return cc_error_prefix(ret_err, "virtiofsd");
                t_fs = mono_us();
        }
        const vmm_ops *ops = p->mode == RT_POD_VM ? rt->vm_ops : rt->host_ops;
        p->ops = ops;
        vmm_config vc;
        rt_vmm_config(rt, p, &vc);
        /* a copy of the template, when one of this size is ready and the pod
         * has the devices it has: one NIC (and the agent on virtio-serial) */
        p->from_template = p->mode == RT_POD_VM && p->net && p->net->n_nics == 1 &&
                           rt_template_for(rt, p->vcpus, p->memory_mib, &vc.template_ram, &vc.template_state);
        if (p->from_template)
                vc.boot_mode = VMM_TEMPLATE_CLONE;
        if (vm_create(p, ops, &vc, ret_err) < 0)
                return -EIO;
        cc_undo_push(undo, undo_vmm, p, NULL);
        cc_error *serr = NULL;
        if (vmm_start(p->vmm, &serr) < 0 && p->from_template) {
                /* a template this QEMU cannot load (upgraded since?): boot,
                 * and have the template built again */
                log_warn("pod=%.12s: cannot start from the template (%s); booting its VM", p->id, serr->msg);
                cc_error_free(TAKE_PTR(serr));
                rt_template_discard(rt, p->vcpus, p->memory_mib);
                rt_template_kick(rt, p->vcpus, p->memory_mib);
                vmm_free(TAKE_PTR(p->vmm));
                p->from_template = false;
                vc.boot_mode = VMM_BOOT;
                if (vm_create(p, ops, &vc, ret_err) < 0)
                        return -EIO;
                (void)vmm_start(p->vmm, &serr);
        }
        if (serr) {
                virtiofsd_explain(p->vfsd, &serr); /* a virtiofsd that failed is why QEMU could not connect */
                cc_error_prefix(&serr, "%s", ops->name);
                return cc_error_propagate(ret_err, serr);
        }
        t_vmm = mono_us();
        if (ops->save && ops->save(p->vmm, &p->vmm_j, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s", ops->name);
        /* should cocoond die before the pod is recorded, the next one stops
         * this VMM (rt_pool_sweep); RunPodSandbox removes it when done */
        if (rt_vm_record_save(p, RT_BOOT_RECORD, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s", ops->name);
        if (vmm_agent_endpoint(p->vmm, &p->ep, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s: agent endpoint", ops->name);
        p->boot_us[0] = t0;
        p->boot_us[1] = t_fs;
        p->boot_us[2] = t_vmm;
        return 0;
}

int rt_pod_vm_dial(rt_runtime *rt, rt_pod *p, cc_undo *undo, cc_error **ret_err)
{
        const vmm_ops *ops = p->ops;
        _cleanup_close_ int cancel = rt_dial_cancel_fd(rt, ops->exit_fd ? ops->exit_fd(p->vmm) : -1);
        int64_t t_dial = mono_us();
        if (rt_agent_dial(&p->ep, rt->agent_timeout_ms, cancel, &p->agent, ret_err) < 0)
                return cc_error_prefix(ret_err, "agent");
        cc_undo_push(undo, undo_agent, p, NULL);
        rt_agent_set_default_timeout(p->agent, RT_CALL_TIMEOUT_MS);
        if (p->from_template) {
                /* the copy resumed with the template's clock and CRNG state */
                struct timespec now;
                unsigned char seed[64];
                clock_gettime(CLOCK_REALTIME, &now);
                if (getrandom(seed, sizeof(seed), 0) != sizeof(seed))
                        return cc_error_errno(ret_err, "getrandom");
                int r = rt_agent_set_time(p->agent, now.tv_sec, now.tv_nsec / 1000, RT_CALL_TIMEOUT_MS, ret_err);
                if (r == 0)
                        r = rt_agent_reseed(p->agent, seed, sizeof(seed), RT_CALL_TIMEOUT_MS, ret_err);
                explicit_bzero(seed, sizeof(seed));
                if (r < 0)
                        return cc_error_prefix(ret_err, "agent");
        }
        int64_t t_end = mono_us(), *b = p->boot_us;
        log_debug("pod=%.12s %s in %.1f ms: virtiofsd %.1f, %s start %.1f, agent ready %.1f "
                  "(dialed %.1f ms after the start)", p->id, p->from_template ? "started from the template" : "booted",
                  (t_end - b[0]) / 1e3, (b[1] - b[0]) / 1e3, ops->name,
                  (b[2] - b[1]) / 1e3, (t_end - b[2]) / 1e3, (t_dial - b[2]) / 1e3);
        /* the first VM of its size has a template of that size built, once
         * it is up (not competing with its boot for the CPU) */
        if (p->mode == RT_POD_VM && !p->from_template)
                rt_template_kick(rt, p->vcpus, p->memory_mib);
        return 0;
}

int rt_pod_vm_boot(rt_runtime *rt, rt_pod *p, cc_undo *undo, cc_error **ret_err)
{
        if (rt_pod_vm_start(rt, p, undo, ret_err) < 0)
                return -1;
        return rt_pod_vm_dial(rt, p, undo, ret_err);
}

/* The pod takes over a VM from the pool (booted by rt_pod_vm_boot with the
 * same size): its VMM, virtiofsd, agent and records, and the same undo as a
 * boot of its own. The pooled shell is freed. */
void rt_pod_vm_adopt(rt_pod *p, rt_pod *v, cc_undo *undo)
{
        p->ops = v->ops;
        p->vfsd = TAKE_PTR(v->vfsd);
        p->vfsd_j = TAKE_PTR(v->vfsd_j);
        p->vmm = TAKE_PTR(v->vmm);
        p->vmm_j = TAKE_PTR(v->vmm_j);
        p->agent = TAKE_PTR(v->agent);
        p->ep = v->ep;
        memcpy(p->boot_us, v->boot_us, sizeof(p->boot_us));
        p->vcpus = v->vcpus;
        p->memory_mib = v->memory_mib;
        p->from_template = v->from_template;
        cc_undo_push(undo, undo_vfsd, p, NULL);
        cc_undo_push(undo, undo_vmm, p, NULL);
        cc_undo_push(undo, undo_agent, p, NULL);
        rt_pod_free(v);
}

void rt_pod_vm_shutdown(rt_runtime *rt, rt_pod *p)
{
        rt_unwatch_pod(rt, p);
        pthread_mutex_lock(&rt->lock);
        rt_agent *a = TAKE_PTR(p->agent);
        pthread_mutex_unlock(&rt->lock);
        if (a) {
                _cleanup_error_ cc_error *err = NULL;
                if (p->mode == RT_POD_VM && rt_agent_destroy_sandbox(a, 5000, &err) < 0)
                        log_debug("pod=%.12s DestroySandbox: %s", p->id, err->msg);
                rt_agent_close(a);
                rt_agent_unref(a);
        }
        if (p->vmm) {
                _cleanup_error_ cc_error *err = NULL;
                if (vmm_stop(p->vmm, rt->stop_timeout_ms, &err) < 0)
                        log_warn("pod=%.12s stopping its %s: %s", p->id, p->ops ? p->ops->name : "VMM", err->msg);
                pthread_mutex_lock(&rt->lock);
                vmm *v = TAKE_PTR(p->vmm);
                rt_json_clear(&p->vmm_j);
                pthread_mutex_unlock(&rt->lock);
                vmm_free(v);
        }
        if (p->vfsd) {
                _cleanup_error_ cc_error *err = NULL;
                if (virtiofsd_stop(p->vfsd, 5000, &err) < 0)
                        log_warn("pod=%.12s stopping virtiofsd: %s", p->id, err->msg);
                pthread_mutex_lock(&rt->lock);
                virtiofsd *d = TAKE_PTR(p->vfsd);
                rt_json_clear(&p->vfsd_j);
                pthread_mutex_unlock(&rt->lock);
                virtiofsd_free(d);
        }
}

/* ---- restart ------------------------------------------------------------------------ */

int rt_pod_vm_load(rt_runtime *rt, rt_pod *p, json_object *vmm_j, json_object *vfsd_j, cc_error **ret_err)
{
        if (vfsd_j) {
                if (virtiofsd_load(vfsd_j, &p->vfsd, ret_err) < 0)
                        return cc_error_prefix(ret_err, "virtiofsd");
                p->vfsd_j = json_object_get(vfsd_j);
        }
        if (!vmm_j)
                return cc_error_set(ret_err, -ENOENT, "no VMM in the record");
        if (!p->ops || !p->ops->load)
                return cc_error_set(ret_err, -EOPNOTSUPP, "the record's VMM backend cannot re-attach");
        vmm_config vc;
        rt_vmm_config(rt, p, &vc);
        if (p->ops->load(&vc, vmm_j, &p->vmm, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s", p->ops->name);
        p->vmm_j = json_object_get(vmm_j);
        if (vmm_agent_endpoint(p->vmm, &p->ep, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s: agent endpoint", p->ops->name);
        return 0;
}

typedef struct dial_job {
        rt_runtime *rt;
        rt_pod *pod;
} dial_job;

static void *reconnect_main(void *arg)
{
        dial_job *j = arg;
        rt_runtime *rt = j->rt;
        rt_pod *p = j->pod;
        free(j);
        rt_agent *a = NULL;
        _cleanup_error_ cc_error *err = NULL;
        /* Stop/Remove wait for the dial: the VMM and its exit fd stay put. */
        pthread_mutex_lock(&p->op_lock);
        const vmm_ops *ops = p->vmm ? vmm_get_ops(p->vmm) : NULL;
        _cleanup_close_ int cancel = rt_dial_cancel_fd(rt, ops && ops->exit_fd ? ops->exit_fd(p->vmm) : -1);
        int r = p->vmm ? rt_agent_dial(&p->ep, rt->agent_timeout_ms, cancel, &a, &err)
                       : cc_error_set(&err, -ENOTCONN, "the pod was stopped");
        pthread_mutex_lock(&rt->lock);
        bool give_up = rt->closing || p->removed || p->state != RT_POD_READY;
        pthread_mutex_unlock(&rt->lock);
        if (r < 0 || give_up) {
                rt_agent_unref(a);
                pthread_mutex_lock(&rt->lock);
                p->reconnecting = false;
                pthread_mutex_unlock(&rt->lock);
                if (r < 0 && !give_up)
                        rt_pod_mark_dead(rt, p, ops && ops->alive && !ops->alive(p->vmm)
                                                        ? (p->mode == RT_POD_VM ? "pod VM exited" : "pod agent exited")
                                                        : "cannot reach the pod's agent");
                if (r < 0 && !give_up)
                        log_warn("pod=%.12s re-dial failed: %s", p->id, err->msg);
                goto out;
        }
        rt_agent_set_default_timeout(a, RT_CALL_TIMEOUT_MS);
        pthread_mutex_lock(&rt->lock);
        rt_agent *old = p->agent;
        p->agent = rt_agent_ref(a);
        p->reconnecting = false;
        pthread_mutex_unlock(&rt->lock);
        rt_ctr **l = NULL;
        size_t n = 0;
        if (rt_pod_ctrs(rt, p, &l, &n) == 0) {
                for (size_t i = 0; i < n; i++)
                        rt_ctr_reattach(rt, l[i], a);
                rt_ctr_list_unref(rt, l, n);
        }
        rt_agent_unref(old);
        rt_watch_pod(rt, p);
        rt_pod_start_oom_watch(rt, p);
        log_info("pod=%.12s re-attached to its agent", p->id);
        rt_agent_unref(a);
out:
        pthread_mutex_unlock(&p->op_lock);
        rt_pod_unref(rt, p);
        rt_thread_done(rt);
        return NULL;
}

void rt_pod_vm_reconnect(rt_runtime *rt, rt_pod *p)
{
        pthread_mutex_lock(&rt->lock);
        bool busy = p->reconnecting || rt->closing;
        p->reconnecting = true;
        pthread_mutex_unlock(&rt->lock);
        if (busy)
                return;
        dial_job *j = malloc(sizeof(*j));
        _cleanup_error_ cc_error *err = NULL;
        if (j) {
                j->rt = rt;
                j->pod = rt_pod_ref(p);
                if (rt_thread_start(rt, reconnect_main, j, &err) == 0)
                        return;
                rt_pod_unref(rt, p);
                free(j);
        }
        pthread_mutex_lock(&rt->lock);
        p->reconnecting = false;
        pthread_mutex_unlock(&rt->lock);
        rt_pod_mark_dead(rt, p, "cannot start the agent re-dial");
}

/* ---- OOM events ---------------------------------------------------------------------- */

typedef struct oom_job {
        rt_runtime *rt;
        rt_pod *pod;
        rt_agent *agent;
} oom_job;

static void *oom_main(void *arg)
{
        oom_job *j = arg;
        for (;;) {
                _cleanup_free_ char *cid = NULL;
                _cleanup_error_ cc_error *err = NULL;
                if (rt_agent_get_oom_event(j->agent, 0, &cid, &err) < 0) {
                        log_debug("pod=%.12s OOM listener ends: %s", j->pod->id, err->msg);
                        break;
                }
                log_info("pod=%.12s container=%.12s OOM-killed", j->pod->id, cid);
                rt_ctr *late = NULL;
                pthread_mutex_lock(&j->rt->lock);
                for (size_t i = 0; i < j->rt->n_ctrs; i++) {
                        rt_ctr *c = j->rt->ctrs[i];
                        if (c->pod != j->pod || strcmp(c->id, cid) != 0)
                                continue;
                        c->oom_killed = true;
                        /* the event came after the exit was recorded */
                        if (c->state == RT_CTR_EXITED && c->exit_code == 137 && strcmp(c->reason, "Error") == 0) {
                                char *r = strdup("OOMKilled");
                                if (r) {
                                        free(c->reason);
                                        c->reason = r;
                                        late = rt_ctr_ref(c);
                                }
                        }
                }
                pthread_mutex_unlock(&j->rt->lock);
                if (late) {
                        _cleanup_error_ cc_error *e = NULL;
                        if (rt_state_save_ctr(j->rt, late, &e) < 0)
                                log_warn("%s", e->msg);
                        rt_ctr_unref(j->rt, late);
                }
        }
        rt_agent_unref(j->agent);
        rt_pod_unref(j->rt, j->pod);
        rt_runtime *rt = j->rt;
        free(j);
        rt_thread_done(rt);
        return NULL;
}

void rt_pod_start_oom_watch(rt_runtime *rt, rt_pod *p)
{
        oom_job *j = calloc(1, sizeof(*j));
        if (!j)
                return;
        j->rt = rt;
        j->agent = rt_pod_agent_get(rt, p, NULL);
        if (!j->agent) {
                free(j);
                return;
        }
        j->pod = rt_pod_ref(p);
        _cleanup_error_ cc_error *err = NULL;
        if (rt_thread_start(rt, oom_main, j, &err) < 0) {
                log_warn("pod=%.12s OOM listener: %s", p->id, err->msg);
                rt_agent_unref(j->agent);
                rt_pod_unref(rt, j->pod);
                free(j);
        }
}
