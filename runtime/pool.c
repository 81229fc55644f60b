/* The VM pool: `vm.pool_size` VMs booted ahead of RunPodSandbox.
 *
 * A pooled VM is a pod in all but its CRI config: it has its id (the pod that
 * takes it gets that id), its run and record directories, a virtiofsd sharing
 * <run>/shared, a QEMU of the default size, and a network namespace named by
 * the id holding a tap (RT_POOL_TAP) that the QEMU's NIC is attached to. Its
 * agent has answered Health.Check. RunPodSandbox for a VM pod of the default
 * size takes one (rt_pool_take) instead of booting: the CNI plugins then run
 * in that namespace, the veth they make is mirrored to the existing tap, and
 * the agent gives the guest NIC the veth's address (UpdateInterface by name).
 * A filler thread boots replacements one at a time.
 *
 * A pooled VM is recorded in <root>/sandboxes/<id>/pool.json (its VMM and
 * virtiofsd records): a cocoond killed while VMs wait finds them at the next
 * start (rt_pool_sweep) and stops them. cocoond stops its pool when it exits
 * (rt_pool_drain); pods keep running as always. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/undo.h"
#include "net-cni/netns.h"
#include "net-cni/tap.h"
#include "runtime/internal.h"
#include "runtime/rootfs.h"
#include "runtime/runtime.h"

#define POOL_RECORD "pool.json"
#define POOL_RETRY_MS 5000 /* after a failed boot */

/* Removes what pool_boot made besides the VM: directories and netns. */
static void pool_remove_dirs(rt_pod *p)
{
        if (p->share_dir)
                (void)rt_share_destroy(p->share_dir, NULL);
        if (p->run_dir)
                (void)cc_rm_rf(p->run_dir, NULL);
        if (p->rec_dir)
                (void)cc_rm_rf(p->rec_dir, NULL);
        if (p->lo_netns) {
                (void)cni_netns_remove(p->lo_netns, NULL);
                free(p->lo_netns);
                p->lo_netns = NULL;
        }
}

static void undo_pool_dirs(void *arg) { pool_remove_dirs(arg); }

int rt_vm_record_save(rt_pod *p, const char *name, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        _cleanup_free_ char *path = NULL;
        if (!o || asprintf(&path, "%s/%s", p->rec_dir, name) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        json_object_object_add(o, "version", json_object_new_int(RT_STATE_VERSION));
        json_object_object_add(o, "id", json_object_new_string(p->id));
        if (p->ops)
                json_object_object_add(o, "backend", json_object_new_string(p->ops->name));
        if (p->vmm_j)
                json_object_object_add(o, "vmm", json_object_get(p->vmm_j));
        if (p->vfsd_j)
                json_object_object_add(o, "virtiofsd", json_object_get(p->vfsd_j));
        return cc_json_write_file(path, o, 0600, ret_err);
}

/* Boots one VM the way the pool keeps them; *ret is not in the pod table.
 * like: the pod whose size it gets (NULL: the default size). pooled: for the
 * pool (the agent dialed, a pool record); else for a pod about to adopt it,
 * which dials the agent itself once its network is set up. */
static int pool_boot(rt_runtime *rt, const Runtime__V1__PodSandboxConfig *like, bool pooled, rt_pod **ret,
                     cc_error **ret_err)
{
        rt_pod *p = rt_pod_new();
        Runtime__V1__PodSandboxConfig *c = like ? rt_proto_copy(&like->base) : calloc(1, sizeof(*c));
        if (!p || !c) {
                if (c && like)
                        protobuf_c_message_free_unpacked(&c->base, NULL);
                else
                        free(c);
                rt_pod_free(p);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        if (!like)
                runtime__v1__pod_sandbox_config__init(c); /* no limits: the default VM size */
        p->config = c;
        if (cc_id_new(p->id, ret_err) < 0) {
                rt_pod_free(p);
                return -EIO;
        }
        p->mode = RT_POD_VM;
        p->handler = strdup("");
        p->created_at_ns = rt_now_ns();
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        int r;
        if (!p->handler || rt_pod_set_paths(rt, p) < 0) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto fail;
        }
        cc_undo_push(&undo, undo_pool_dirs, p, NULL);
        if ((r = cc_mkdir_p(p->run_dir, 0711, ret_err)) < 0 || (r = cc_mkdir_p(p->rec_dir, 0700, ret_err)) < 0 ||
            (r = rt_share_prepare(p->share_dir, ret_err)) < 0)
                goto fail;

        /* the netns the pod will get, with the tap its NIC will be mirrored to */
        _cleanup_close_ int tap_fd = -1;
        if ((r = cni_netns_create(rt->cfg->cni.netns_dir, p->id, &p->lo_netns, ret_err)) < 0 ||
            (r = cni_tap_create(p->lo_netns, RT_POOL_TAP, &tap_fd, ret_err)) < 0) {
                cc_error_prefix(ret_err, "pool network");
                goto fail;
        }
        rt_pod_nic nic = { .tap_fd = tap_fd };
        snprintf(nic.tap, sizeof(nic.tap), "%s", RT_POOL_TAP);
        unsigned char m[6];
        if (getrandom(m, sizeof(m), 0) != sizeof(m)) {
                r = cc_error_errno(ret_err, "getrandom");
                goto fail;
        }
        m[0] = (unsigned char)((m[0] & 0xfe) | 0x02); /* unicast, locally administered */
        snprintf(nic.mac, sizeof(nic.mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
        rt_pod_net pn = { .nics = &nic, .n_nics = 1 };
        p->net = &pn;
        r = pooled ? rt_pod_vm_boot(rt, p, &undo, ret_err) : rt_pod_vm_start(rt, p, &undo, ret_err);
        p->net = NULL;
        if (r < 0 || (pooled && (r = rt_vm_record_save(p, POOL_RECORD, ret_err)) < 0))
                goto fail;
        cc_undo_disarm(&undo);
        *ret = p;
        return 0;
fail:
        p->net = NULL;
        cc_undo_run(&undo);
        rt_pod_free(p);
        return r < 0 ? r : -EIO;
}

/* Stops a pooled VM and removes everything it had. */
static void pool_destroy(rt_runtime *rt, rt_pod *p)
{
        rt_pod_vm_shutdown(rt, p);
        pool_remove_dirs(p);
        rt_pod_free(p);
}

static void *filler_main(void *arg)
{
        rt_runtime *rt = arg;
        size_t want = (size_t)rt->cfg->vm.pool_size;
        for (;;) {
                pthread_mutex_lock(&rt->lock);
                while (!rt->closing && rt->n_pool >= want)
                        pthread_cond_wait(&rt->pool_cond, &rt->lock);
                bool closing = rt->closing;
                pthread_mutex_unlock(&rt->lock);
                if (closing)
                        break;
                rt_pod *p = NULL;
                _cleanup_error_ cc_error *err = NULL;
                if (pool_boot(rt, NULL, true, &p, &err) < 0) {
                        log_warn("pool: cannot boot a VM ahead: %s (retrying in %d s)", err->msg, POOL_RETRY_MS / 1000);
                        pthread_mutex_lock(&rt->lock);
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        ts.tv_sec += POOL_RETRY_MS / 1000;
                        while (!rt->closing &&
                               pthread_cond_timedwait(&rt->pool_cond, &rt->lock, &ts) != ETIMEDOUT)
                                ;
                        pthread_mutex_unlock(&rt->lock);
                        continue;
                }
                pthread_mutex_lock(&rt->lock);
                bool keep = !rt->closing && rt->n_pool < RT_POOL_MAX;
                if (keep)
                        rt->pool[rt->n_pool++] = p;
                pthread_mutex_unlock(&rt->lock);
                if (!keep) {
                        pool_destroy(rt, p);
                        break;
                }
                log_debug("pool: VM %.12s ready (%zu of %zu)", p->id, rt->n_pool, want);
        }
        rt_thread_done(rt);
        return NULL;
}

int rt_pool_start(rt_runtime *rt, cc_error **ret_err)
{
        if (rt->cfg->vm.pool_size <= 0 || !rt->vm_ops)
                return 0;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&rt->pool_cond, &ca);
        pthread_condattr_destroy(&ca);
        rt->pool_started = true;
        return rt_thread_start(rt, filler_main, rt, ret_err);
}

/* The VMM of a pooled VM has exited (crashed, killed): nobody watches
 * pooled VMs, so this is checked when one is taken. */
static bool pool_vm_dead(rt_pod *p)
{
        int fd = p->ops && p->ops->exit_fd && p->vmm ? p->ops->exit_fd(p->vmm) : -1;
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        return fd >= 0 && poll(&pf, 1, 0) > 0;
}

int rt_pool_boot_now(rt_runtime *rt, const Runtime__V1__PodSandboxConfig *config, rt_pod **ret,
                     cc_error **ret_err)
{
        return pool_boot(rt, config, false, ret, ret_err);
}

rt_pod *rt_pool_take(rt_runtime *rt, int vcpus, int memory_mib)
{
        rt_pod *p = NULL;
again:
        pthread_mutex_lock(&rt->lock);
        for (size_t i = 0; i < rt->n_pool; i++) {
                if (rt->pool[i]->vcpus != vcpus || rt->pool[i]->memory_mib != memory_mib)
                        continue;
                p = rt->pool[i];
                rt->pool[i] = rt->pool[--rt->n_pool];
                break;
        }
        if (p)
                pthread_cond_broadcast(&rt->pool_cond); /* boot a replacement */
        pthread_mutex_unlock(&rt->lock);
        if (p && pool_vm_dead(p)) {
                log_warn("pool: VM %.12s exited while it waited; removing it", p->id);
                pool_destroy(rt, p);
                p = NULL;
                goto again;
        }
        if (p) {
                /* from now on it is the pod's: its record is the pod's */
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/" POOL_RECORD, p->rec_dir) >= 0)
                        (void)unlink(path);
        }
        return p;
}

void rt_runtime_pool_status(rt_runtime *rt, int *ret_size, int *ret_ready)
{
        pthread_mutex_lock(&rt->lock);
        *ret_size = rt->pool_started ? (int)rt->cfg->vm.pool_size : 0;
        *ret_ready = (int)rt->n_pool;
        pthread_mutex_unlock(&rt->lock);
}

void rt_pool_wake(rt_runtime *rt)
{
        if (rt->pool_started)
                pthread_cond_broadcast(&rt->pool_cond);
}

void rt_pool_drain(rt_runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        size_t n = rt->n_pool;
        rt->n_pool = 0;
        pthread_mutex_unlock(&rt->lock);
        for (size_t i = 0; i < n; i++) {
                log_debug("pool: stopping VM %.12s", rt->pool[i]->id);
                pool_destroy(rt, rt->pool[i]);
                rt->pool[i] = NULL;
        }
        if (rt->pool_started) {
                pthread_cond_destroy(&rt->pool_cond);
                rt->pool_started = false;
        }
}

bool rt_pool_sweep(rt_runtime *rt, const char *id)
{
        _cleanup_free_ char *path = NULL;
        bool pooled = true;
        if (asprintf(&path, "%s/%s/" POOL_RECORD, rt->sb_rec_root, id) < 0)
                return false;
        if (access(path, F_OK) < 0) {
                /* a boot that RunPodSandbox never finished */
                free(path);
                pooled = false;
                if (asprintf(&path, "%s/%s/" RT_BOOT_RECORD, rt->sb_rec_root, id) < 0 || access(path, F_OK) < 0)
                        return false;
        }
        log_info("%s %.12s left by the previous cocoond: stopping it", pooled ? "pool: VM" : "unfinished pod",
                 id);
        _cleanup_error_ cc_error *err = NULL;
        _cleanup_json_ json_object *o = NULL;
        rt_pod *p = rt_pod_new();
        if (!p)
                return true;
        snprintf(p->id, sizeof(p->id), "%s", id);
        p->mode = RT_POD_VM;
        p->ops = rt->vm_ops;
        json_object *vmm_j = NULL, *vfsd_j = NULL, *b = NULL;
        if (!(o = json_object_from_file(path))) {
                log_warn("%.12s: unreadable record %s", id, path);
        } else {
                json_object_object_get_ex(o, "vmm", &vmm_j);
                json_object_object_get_ex(o, "virtiofsd", &vfsd_j);
                if (json_object_object_get_ex(o, "backend", &b) && json_object_is_type(b, json_type_string)) {
                        const vmm_ops *ops = rt_ops_by_name(rt, json_object_get_string(b));
                        if (ops && ops != rt->vm_ops) {
                                p->ops = ops;
                                p->mode = RT_POD_HOST;
                        }
                }
        }
        /* the paths depend on the mode, known once the record is read */
        if (rt_pod_set_paths(rt, p) < 0) {
                rt_pod_free(p);
                return true;
        }
        if (o && rt_pod_vm_load(rt, p, vmm_j, vfsd_j, &err) < 0)
                log_debug("%.12s: %s", id, err->msg); /* gone already */
        if (asprintf(&p->lo_netns, "%s/%s", rt->cfg->cni.netns_dir, id) < 0 || access(p->lo_netns, F_OK) < 0) {
                free(p->lo_netns);
                p->lo_netns = NULL;
        }
        pool_destroy(rt, p);
        return true;
}
