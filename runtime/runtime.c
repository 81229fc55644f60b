/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime handle: the pod and container tables, references and lookups,
 * the watcher thread (one epoll set over every pod's VMM exit fd and agent
 * connection), the image in-use hook, the streaming backend's lookups, and
 * the reload of the records at start (re-attach to living pods). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/thread.h"
#include "runtime/internal.h"
#include "runtime/rootfs.h"
#include "runtime/spec.h"

int64_t rt_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

char *rt_strdup0(const char *s)
{
        return strdup(s ? s : "");
}

void *rt_proto_copy(const ProtobufCMessage *m)
{
        if (!m)
                return NULL;
        size_t len = protobuf_c_message_get_packed_size(m);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return NULL;
        protobuf_c_message_pack(m, buf);
        return protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
}

/* ---- references ---------------------------------------------------------------- */

rt_pod *rt_pod_ref(rt_pod *p)
{
        if (p)
                __atomic_add_fetch(&p->refs, 1, __ATOMIC_SEQ_CST);
        return p;
}

void rt_pod_unref(rt_runtime *rt, rt_pod *p)
{
        (void)rt;
        if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_SEQ_CST) == 0)
                rt_pod_free(p);
}

rt_ctr *rt_ctr_ref(rt_ctr *c)
{
        if (c)
                __atomic_add_fetch(&c->refs, 1, __ATOMIC_SEQ_CST);
        return c;
}

void rt_ctr_unref(rt_runtime *rt, rt_ctr *c)
{
        if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_SEQ_CST) == 0) {
                rt_pod *p = c->pod;
                c->pod = NULL;
                rt_ctr_free(c);
                rt_pod_unref(rt, p);
        }
}

/* ---- tables ------------------------------------------------------------------- */

static int grow(void ***arr, size_t *cap, size_t n)
{
        if (n < *cap)
                return 0;
        size_t nc = *cap ? *cap * 2 : 16;
        void **a = realloc(*arr, nc * sizeof(void *));
        if (!a)
                return -ENOMEM;
        *arr = a;
        *cap = nc;
        return 0;
}

int rt_table_add_pod(rt_runtime *rt, rt_pod *p)
{
        if (grow((void ***)&rt->pods, &rt->cap_pods, rt->n_pods) < 0)
                return -ENOMEM;
        p->serial = ++rt->next_serial;
        rt->pods[rt->n_pods++] = rt_pod_ref(p);
        return 0;
}

void rt_table_del_pod(rt_runtime *rt, rt_pod *p)
{
        for (size_t i = 0; i < rt->n_pods; i++)
                if (rt->pods[i] == p) {
                        memmove(&rt->pods[i], &rt->pods[i + 1], (rt->n_pods - i - 1) * sizeof(*rt->pods));
                        rt->n_pods--;
                        p->removed = true;
                        /* the table's reference: the caller holds another one */
                        __atomic_sub_fetch(&p->refs, 1, __ATOMIC_SEQ_CST);
                        return;
                }
}

int rt_table_add_ctr(rt_runtime *rt, rt_ctr *c)
{
        if (grow((void ***)&rt->ctrs, &rt->cap_ctrs, rt->n_ctrs) < 0)
                return -ENOMEM;
        rt->ctrs[rt->n_ctrs++] = rt_ctr_ref(c);
        return 0;
}

void rt_table_del_ctr(rt_runtime *rt, rt_ctr *c)
{
        for (size_t i = 0; i < rt->n_ctrs; i++)
                if (rt->ctrs[i] == c) {
                        memmove(&rt->ctrs[i], &rt->ctrs[i + 1], (rt->n_ctrs - i - 1) * sizeof(*rt->ctrs));
                        rt->n_ctrs--;
                        c->removed = true;
                        __atomic_sub_fetch(&c->refs, 1, __ATOMIC_SEQ_CST);
                        return;
                }
}

int rt_find_pod(rt_runtime *rt, const char *id, rt_pod **ret, cc_error **ret_err)
{
        if (!id || !cc_id_is_prefix(id))
                return cc_error_set(ret_err, -ENOENT, "pod sandbox '%.80s' not found", id ? id : "");
        size_t n = strlen(id);
        rt_pod *found = NULL;
        int matches = 0;
        pthread_mutex_lock(&rt->lock);
        for (size_t i = 0; i < rt->n_pods; i++) {
                rt_pod *p = rt->pods[i];
                if (p->creating || strncmp(p->id, id, n) != 0)
                        continue;
                if (n == CC_ID_LEN) {
                        found = p;
                        matches = 1;
                        break;
                }
                found = p;
                matches++;
        }
        if (matches == 1)
                rt_pod_ref(found);
        pthread_mutex_unlock(&rt->lock);
        if (matches == 0)
                return cc_error_set(ret_err, -ENOENT, "pod sandbox '%s' not found", id);
        if (matches > 1)
                return cc_error_set(ret_err, -EINVAL, "pod sandbox id prefix '%s' is ambiguous", id);
        *ret = found;
        return 0;
}

int rt_find_ctr(rt_runtime *rt, const char *id, rt_ctr **ret, cc_error **ret_err)
{
        if (!id || !cc_id_is_prefix(id))
                return cc_error_set(ret_err, -ENOENT, "container '%.80s' not found", id ? id : "");
        size_t n = strlen(id);
        rt_ctr *found = NULL;
        int matches = 0;
        pthread_mutex_lock(&rt->lock);
        for (size_t i = 0; i < rt->n_ctrs; i++) {
                rt_ctr *c = rt->ctrs[i];
                if (c->creating || strncmp(c->id, id, n) != 0)
                        continue;
                if (n == CC_ID_LEN) {
                        found = c;
                        matches = 1;
                        break;
                }
                found = c;
                matches++;
        }
        if (matches == 1)
                rt_ctr_ref(found);
        pthread_mutex_unlock(&rt->lock);
        if (matches == 0)
                return cc_error_set(ret_err, -ENOENT, "container '%s' not found", id);
        if (matches > 1)
                return cc_error_set(ret_err, -EINVAL, "container id prefix '%s' is ambiguous", id);
        *ret = found;
        return 0;
}

int rt_pod_ctrs(rt_runtime *rt, rt_pod *p, rt_ctr ***ret, size_t *ret_n)
{
        pthread_mutex_lock(&rt->lock);
        rt_ctr **l = calloc(rt->n_ctrs + 1, sizeof(*l));
        size_t n = 0;
        if (l)
                for (size_t i = 0; i < rt->n_ctrs; i++)
                        if (rt->ctrs[i]->pod == p)
                                l[n++] = rt_ctr_ref(rt->ctrs[i]);
        pthread_mutex_unlock(&rt->lock);
        if (!l)
                return -ENOMEM;
        *ret = l;
        *ret_n = n;
        return 0;
}

void rt_ctr_list_unref(rt_runtime *rt, rt_ctr **l, size_t n)
{
        for (size_t i = 0; i < n; i++)
                rt_ctr_unref(rt, l[i]);
        free(l);
}

rt_agent *rt_pod_agent_get(rt_runtime *rt, rt_pod *p, cc_error **ret_err)
{
        pthread_mutex_lock(&rt->lock);
        rt_agent *a = p->agent && p->state == RT_POD_READY ? rt_agent_ref(p->agent) : NULL;
        bool reconnecting = p->reconnecting;
        rt_pod_state st = p->state;
        pthread_mutex_unlock(&rt->lock);
        if (!a) {
                if (st != RT_POD_READY)
                        cc_error_set(ret_err, -EBUSY, "pod sandbox %.12s is not ready", p->id);
                else
                        cc_error_set(ret_err, -ENOTCONN, "pod sandbox %.12s: %s", p->id,
                                     reconnecting ? "reconnecting to its agent" : "no agent connection");
        }
        return a;
}

/* ---- helper threads ---------------------------------------------------------- */

typedef struct thread_start {
        void *(*fn)(void *);
        void *arg;
} thread_start;

int rt_thread_start(rt_runtime *rt, void *(*fn)(void *), void *arg, cc_error **ret_err)
{
        pthread_mutex_lock(&rt->lock);
        rt->n_threads++;
        pthread_mutex_unlock(&rt->lock);
        int r = cc_thread_start_detached(fn, arg, 256 * 1024);
        if (r < 0) {
                rt_thread_done(rt);
                return cc_error_set(ret_err, r, "cannot start a thread: %s", strerror(-r));
        }
        return 0;
}

void rt_thread_done(rt_runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        rt->n_threads--;
        pthread_cond_broadcast(&rt->cond);
        pthread_mutex_unlock(&rt->lock);
}

/* ---- watcher --------------------------------------------------------------------- */

#define WATCH_VMM 0
#define WATCH_AGENT 1

static void epoll_add(rt_runtime *rt, int fd, uint64_t key)
{
        if (fd < 0)
                return;
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = key };
        if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                log_debug("watcher: epoll add fd %d: %m", fd);
}

static int vmm_exit_fd(rt_pod *p)
{
        if (!p->vmm)
                return -1;
        const vmm_ops *ops = vmm_get_ops(p->vmm);
        return ops && ops->exit_fd ? ops->exit_fd(p->vmm) : -1;
}

void rt_watch_pod(rt_runtime *rt, rt_pod *p)
{
        pthread_mutex_lock(&rt->lock);
        if (!p->watched && !p->dead && rt->epfd >= 0) {
                p->watched = true;
                epoll_add(rt, vmm_exit_fd(p), p->serial << 1 | WATCH_VMM);
                if (p->agent)
                        epoll_add(rt, rt_agent_closed_fd(p->agent), p->serial << 1 | WATCH_AGENT);
        }
        pthread_mutex_unlock(&rt->lock);
}

static void unwatch_locked(rt_runtime *rt, rt_pod *p)
{
        if (!p->watched)
                return;
        p->watched = false;
        int fd = vmm_exit_fd(p);
        if (fd >= 0)
                epoll_ctl(rt->epfd, EPOLL_CTL_DEL, fd, NULL);
        if (p->agent && (fd = rt_agent_closed_fd(p->agent)) >= 0)
                epoll_ctl(rt->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void rt_unwatch_pod(rt_runtime *rt, rt_pod *p)
{
        pthread_mutex_lock(&rt->lock);
        unwatch_locked(rt, p);
        pthread_mutex_unlock(&rt->lock);
}

static bool vmm_is_alive(rt_pod *p)
{
        if (!p->vmm)
                return false;
        const vmm_ops *ops = vmm_get_ops(p->vmm);
        return ops && ops->alive ? ops->alive(p->vmm) : true;
}

void rt_pod_mark_dead(rt_runtime *rt, rt_pod *p, const char *why)
{
        rt_ctr **l = NULL;
        size_t n = 0;
        pthread_mutex_lock(&rt->lock);
        bool was = p->dead;
        p->dead = true;
        p->state = RT_POD_NOTREADY;
        unwatch_locked(rt, p);
        rt_agent *a = p->agent ? rt_agent_ref(p->agent) : NULL;
        int64_t now = rt_now_ns();
        for (size_t i = 0; i < rt->n_ctrs; i++) {
                rt_ctr *c = rt->ctrs[i];
                if (c->pod != p || (c->state != RT_CTR_RUNNING && c->state != RT_CTR_CREATED))
                        continue;
                /* What containerd reports for a task killed with its shim:
                 * 137 (SIGKILL) for a running one. */
                c->exit_code = c->state == RT_CTR_RUNNING ? 137 : 255;
                c->state = RT_CTR_EXITED;
                c->finished_at_ns = now;
                free(c->reason);
                free(c->message);
                c->reason = strdup(c->oom_killed ? "OOMKilled" : "Error");
                c->message = strdup(why);
                rt_events_publish(rt, RT_EVENT_STOPPED, c->id, p->id);
        }
        if (!was)
                rt_events_publish(rt, RT_EVENT_STOPPED, p->id, p->id);
        pthread_cond_broadcast(&rt->cond);
        pthread_mutex_unlock(&rt->lock);
        if (!was)
                log_warn("pod=%.12s %s: marked NOTREADY, its containers EXITED", p->id, why);
        if (a) {
                rt_agent_close(a); /* ends the waiters, pumps, OOM listener */
                rt_agent_unref(a);
        }
        _cleanup_error_ cc_error *err = NULL;
        if (rt_state_save_pod(rt, p, &err) < 0)
                log_warn("%s", err->msg);
        if (rt_pod_ctrs(rt, p, &l, &n) == 0) {
                for (size_t i = 0; i < n; i++) {
                        _cleanup_error_ cc_error *e = NULL;
                        if (rt_state_save_ctr(rt, l[i], &e) < 0)
                                log_warn("%s", e->msg);
                }
                rt_ctr_list_unref(rt, l, n);
        }
}

static rt_pod *pod_by_serial(rt_runtime *rt, uint64_t serial)
{
        for (size_t i = 0; i < rt->n_pods; i++)
                if (rt->pods[i]->serial == serial)
                        return rt->pods[i];
        return NULL;
}

static void *watcher_main(void *arg)
{
        rt_runtime *rt = arg;
        for (;;) {
                struct epoll_event evs[16];
                int n = epoll_wait(rt->epfd, evs, CC_ARRAY_SIZE(evs), -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        log_warn("watcher: epoll_wait: %m");
                        return NULL;
                }
                for (int i = 0; i < n; i++) {
                        if (evs[i].data.u64 == 0)
                                return NULL; /* wake_fd: closing */
                        uint64_t serial = evs[i].data.u64 >> 1;
                        int kind = (int)(evs[i].data.u64 & 1);
                        pthread_mutex_lock(&rt->lock);
                        rt_pod *p = pod_by_serial(rt, serial);
                        if (!p || !p->watched) {
                                pthread_mutex_unlock(&rt->lock);
                                continue;
                        }
                        rt_pod_ref(p);
                        unwatch_locked(rt, p);
                        pthread_mutex_unlock(&rt->lock);
                        pthread_mutex_lock(&rt->lock);
                        bool alive = vmm_is_alive(p);
                        pthread_mutex_unlock(&rt->lock);
                        if (kind == WATCH_AGENT && alive) {
                                /* The guest is still there: a lost connection, not a
                                 * dead pod. Waiters fail; dial again. */
                                log_warn("pod=%.12s lost its agent connection; reconnecting", p->id);
                                rt_pod_vm_reconnect(rt, p);
                        } else {
                                rt_pod_mark_dead(rt, p, p->mode == RT_POD_VM ? "pod VM exited"
                                                                             : "pod agent exited");
                        }
                        rt_pod_unref(rt, p);
                }
        }
}

/* ---- image in-use hook -------------------------------------------------------- */

static bool layer_in_use(void *userdata, const char *chain_id)
{
        rt_runtime *rt = userdata;
        bool used = false;
        pthread_mutex_lock(&rt->lock);
        for (size_t i = 0; i < rt->n_ctrs && !used; i++)
                for (char **c = rt->ctrs[i]->chain_ids; c && *c && !used; c++)
                        used = strcmp(*c, chain_id) == 0;
        pthread_mutex_unlock(&rt->lock);
        return used;
}

/* ---- open / reload ---------------------------------------------------------------- */

static void load_pod_dir(rt_runtime *rt, const char *id)
{
        _cleanup_free_ char *rec = NULL, *path = NULL, *cdir = NULL;
        if (asprintf(&rec, "%s/%s", rt->sb_rec_root, id) < 0 || asprintf(&path, "%s/pod.json", rec) < 0 ||
            asprintf(&cdir, "%s/containers", rec) < 0)
                return;
        _cleanup_error_ cc_error *err = NULL;
        _cleanup_json_ json_object *vmm_j = NULL, *vfsd_j = NULL, *net_j = NULL;
        rt_pod *p = NULL;
        if (rt_state_load_pod(rt, path, &p, &vmm_j, &vfsd_j, &net_j, &err) < 0) {
                if (err->code == -ENOENT && rt_pool_sweep(rt, id)) {
                        return; /* a VM of the pool: stopped, removed */
                } else if (err->code == -ENOENT) {
                        /* RunPodSandbox never finished (cocoond died in it):
                         * nothing of it was published; clean what is there. */
                        log_warn("pod %.12s: no record (interrupted RunPodSandbox); removing its leftovers", id);
                        _cleanup_free_ char *run = NULL, *share = NULL;
                        if (asprintf(&run, "%s/%s", rt->sb_run_root, id) >= 0 &&
                            asprintf(&share, "%s/shared", run) >= 0) {
                                (void)rt_share_destroy(share, NULL);
                                (void)cc_rm_rf(run, NULL);
                        }
                        (void)cc_rm_rf(rec, NULL);
                } else {
                        log_error("pod %.12s: record ignored: %s", id, err->msg);
                }
                return;
        }
        if (strcmp(p->id, id) != 0) {
                log_error("pod record %s names another id; ignored", path);
                rt_pod_free(p);
                return;
        }
        if (net_j) {
                /* pod-net keeps parts of what it loads: give it its own copy */
                _cleanup_error_ cc_error *e = NULL;
                _cleanup_json_ json_object *copy = NULL;
                if (json_object_deep_copy(net_j, &copy, NULL) < 0 || !copy)
                        log_warn("pod=%.12s network record: out of memory", p->id);
                else if (rt_pod_net_load(copy, &p->net, &e) < 0)
                        log_warn("pod=%.12s network record: %s", p->id, e->msg);
                p->net_j = json_object_get(net_j);
        }
        pthread_mutex_lock(&rt->lock);
        int r = rt_table_add_pod(rt, p);
        pthread_mutex_unlock(&rt->lock);
        if (r < 0) {
                rt_pod_free(p);
                return;
        }
        /* containers */
        _cleanup_closedir_ DIR *d = opendir(cdir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                size_t n = strlen(de->d_name);
                if (n != CC_ID_LEN + 5 || strcmp(de->d_name + CC_ID_LEN, ".json") != 0)
                        continue;
                _cleanup_free_ char *cp = NULL;
                if (asprintf(&cp, "%s/%s", cdir, de->d_name) < 0)
                        continue;
                rt_ctr *c = NULL;
                _cleanup_error_ cc_error *e = NULL;
                if (rt_state_load_ctr(rt, p, cp, &c, &e) < 0) {
                        log_error("container record ignored: %s", e->msg);
                        continue;
                }
                rt_pod_ref(p);
                pthread_mutex_lock(&rt->lock);
                r = rt_table_add_ctr(rt, c);
                pthread_mutex_unlock(&rt->lock);
                rt_ctr_unref(rt, c);
        }
        /* the VMM, virtiofsd and agent */
        if (p->state == RT_POD_READY) {
                _cleanup_error_ cc_error *e = NULL;
                if (rt_pod_vm_load(rt, p, vmm_j, vfsd_j, &e) < 0) {
                        log_warn("pod=%.12s cannot re-attach: %s", p->id, e->msg);
                        rt_pod_mark_dead(rt, p, "pod VM lost while cocoond was down");
                } else if (!vmm_is_alive(p)) {
                        rt_pod_mark_dead(rt, p, p->mode == RT_POD_VM ? "pod VM exited" : "pod agent exited");
                } else {
                        rt_pod_vm_reconnect(rt, p);
                }
        } else {
                /* Stopped: keep what stop left to clean at Remove. */
                _cleanup_error_ cc_error *e = NULL;
                (void)rt_pod_vm_load(rt, p, vmm_j, vfsd_j, &e);
                pthread_mutex_lock(&rt->lock);
                p->dead = true; /* quiet: it was stopped, not lost */
                pthread_mutex_unlock(&rt->lock);
                rt_pod_mark_dead(rt, p, "pod stopped");
        }
        rt_pod_unref(rt, p);
}

static void load_all(rt_runtime *rt)
{
        _cleanup_closedir_ DIR *d = opendir(rt->sb_rec_root);
        struct dirent *de;
        while (d && (de = readdir(d)))
                if (cc_id_is_valid(de->d_name))
                        load_pod_dir(rt, de->d_name);
        /* run dirs without a record: leftovers of an interrupted RunPodSandbox */
        _cleanup_closedir_ DIR *r = opendir(rt->sb_run_root);
        while (r && (de = readdir(r))) {
                if (!cc_id_is_valid(de->d_name))
                        continue;
                _cleanup_free_ char *rec = NULL;
                if (asprintf(&rec, "%s/%s", rt->sb_rec_root, de->d_name) < 0 || access(rec, F_OK) == 0)
                        continue;
                log_warn("pod %.12s: run directory without a record; removing it", de->d_name);
                _cleanup_free_ char *run = NULL, *share = NULL;
                if (asprintf(&run, "%s/%s", rt->sb_run_root, de->d_name) >= 0 &&
                    asprintf(&share, "%s/shared", run) >= 0) {
                        (void)rt_share_destroy(share, NULL);
                        (void)cc_rm_rf(run, NULL);
                }
        }
}

int rt_runtime_open_opts(cc_config *cfg, image_db *images, rt_net *net, const rt_runtime_opts *o,
                         rt_runtime **ret, cc_error **ret_err)
{
        rt_runtime *rt = calloc(1, sizeof(*rt));
        if (!rt)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        rt->cfg = cfg;
        rt->images = images;
        rt->net = net;
        rt->vm_ops = o && o->vm_ops ? o->vm_ops : &vmm_qemu_ops;
        rt->host_ops = o && o->host_ops ? o->host_ops : &vmm_host_ops;
        rt->agent_timeout_ms = (int)cfg->vm.agent_timeout * 1000;
        rt->stop_timeout_ms = 10000;
        rt->epfd = rt->wake_fd = -1;
        pthread_mutex_init(&rt->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&rt->cond, &ca);
        pthread_condattr_destroy(&ca);
        if (asprintf(&rt->sb_run_root, "%s/sandboxes", cfg->paths.state) < 0 ||
            asprintf(&rt->sb_rec_root, "%s/sandboxes", cfg->paths.root) < 0 ||
            asprintf(&rt->layers_root, "%s/layers/sha256", cfg->paths.root) < 0) {
                rt_runtime_free(rt);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        if (cc_mkdir_p(rt->sb_run_root, 0711, ret_err) < 0 || cc_mkdir_p(rt->sb_rec_root, 0700, ret_err) < 0) {
                rt_runtime_free(rt);
                return cc_error_prefix(ret_err, "runtime state");
        }
        rt->epfd = epoll_create1(EPOLL_CLOEXEC);
        rt->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (rt->epfd < 0 || rt->wake_fd < 0) {
                int r = cc_error_errno(ret_err, "runtime watcher");
                rt_runtime_free(rt);
                return r;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
        epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rt->wake_fd, &ev);
        int r = pthread_create(&rt->watcher, NULL, watcher_main, rt);
        if (r != 0) {
                rt_runtime_free(rt);
                return cc_error_set(ret_err, -r, "runtime watcher thread: %s", strerror(r));
        }
        rt->watcher_started = true;
        load_all(rt);
        if (images)
                image_db_set_in_use_hook(images, layer_in_use, rt);
        if (net) {
                _cleanup_error_ cc_error *perr = NULL;
                if (rt_pool_start(rt, &perr) < 0)
                        log_warn("pool: %s", perr->msg);
                cc_error_free(TAKE_PTR(perr));
                if (rt_template_start(rt, &perr) < 0)
                        log_warn("template: %s", perr->msg);
        }
        log_debug("runtime: %zu pods, %zu containers reloaded", rt->n_pods, rt->n_ctrs);
        *ret = rt;
        return 0;
}

int rt_runtime_open(cc_config *cfg, image_db *images, rt_net *net, rt_runtime **ret, cc_error **ret_err)
{
        return rt_runtime_open_opts(cfg, images, net, NULL, ret, ret_err);
}

void rt_runtime_free(rt_runtime *rt)
{
        if (!rt)
                return;
        if (rt->images)
                image_db_set_in_use_hook(rt->images, NULL, NULL);
        pthread_mutex_lock(&rt->lock);
        rt->closing = true;
        rt_pool_wake(rt);
        for (size_t i = 0; i < rt->n_pods; i++) {
                unwatch_locked(rt, rt->pods[i]);
                if (rt->pods[i]->agent)
                        rt_agent_close(rt->pods[i]->agent);
        }
        pthread_mutex_unlock(&rt->lock);
        if (rt->watcher_started) {
                uint64_t one = 1;
                if (write(rt->wake_fd, &one, sizeof(one)) < 0)
                        log_debug("watcher wake: %m");
                pthread_join(rt->watcher, NULL);
        }
        /* helper threads end once their agent calls fail */
        pthread_mutex_lock(&rt->lock);
        while (rt->n_threads > 0)
                pthread_cond_wait(&rt->cond, &rt->lock);
        pthread_mutex_unlock(&rt->lock);
        rt_pool_drain(rt);
        rt_template_remove(rt);
        for (size_t i = 0; i < rt->n_ctrs; i++) {
                rt_ctr_io_free(rt->ctrs[i]->io);
                rt->ctrs[i]->io = NULL;
                rt_ctr_unref(rt, rt->ctrs[i]);
        }
        for (size_t i = 0; i < rt->n_pods; i++)
                rt_pod_unref(rt, rt->pods[i]);
        free(rt->ctrs);
        free(rt->pods);
        if (rt->epfd >= 0)
                close(rt->epfd);
        if (rt->wake_fd >= 0)
                close(rt->wake_fd);
        free(rt->sb_run_root);
        free(rt->sb_rec_root);
        free(rt->layers_root);
        pthread_cond_destroy(&rt->cond);
        pthread_mutex_destroy(&rt->lock);
        free(rt);
}

/* ---- streaming backend lookups -------------------------------------------------------- */

int rt_runtime_exec_target(rt_runtime *rt, const char *container_id, rt_exec_target **ret,
                           cc_error **ret_err)
{
        rt_ctr *c = NULL;
        if (rt_find_ctr(rt, container_id, &c, ret_err) < 0)
                return -ENOENT;
        _cleanup_free_ rt_exec_target *t = calloc(1, sizeof(*t));
        int r = 0;
        pthread_mutex_lock(&rt->lock);
        rt_ctr_state st = c->state;
        rt_pod *p = c->pod;
        if (!t)
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        else if (st != RT_CTR_RUNNING)
                r = cc_error_set(ret_err, -EBUSY, "container %.12s is not running (state %s)", c->id,
                                 rt_ctr_state_to_string(st));
        else if (!p->agent || p->state != RT_POD_READY)
                r = cc_error_set(ret_err, -ENOTCONN, "container %.12s: its pod has no agent connection",
                                 c->id);
        if (r == 0) {
                t->agent = rt_agent_ref(p->agent);
                t->sandbox_id = strdup(p->id);
                t->container_id = strdup(c->id);
                t->spec = c->spec ? rt_proto_copy(&c->spec->base) : NULL;
                t->tty = c->tty;
                t->stdin_ = c->stdin_;
                t->io = c->io ? rt_ctr_io_ref(c->io) : NULL;
        }
        pthread_mutex_unlock(&rt->lock);
        rt_ctr_unref(rt, c);
        if (r < 0)
                return r;
        if (!t->sandbox_id || !t->container_id || !t->spec) {
                rt_exec_target_free(TAKE_PTR(t));
                return cc_error_set(ret_err, -ENOMEM, "out of memory (or no spec recorded)");
        }
        *ret = TAKE_PTR(t);
        return 0;
}

void rt_exec_target_free(rt_exec_target *t)
{
        if (!t)
                return;
        rt_agent_unref(t->agent);
        rt_ctr_io_unref(t->io);
        if (t->spec)
                protobuf_c_message_free_unpacked(&t->spec->base, NULL);
        free(t->sandbox_id);
        free(t->container_id);
        free(t);
}

int rt_runtime_pod_agent(rt_runtime *rt, const char *sandbox_id, rt_agent **ret_agent,
                         bool *ret_host_network, cc_error **ret_err)
{
        rt_pod *p = NULL;
        if (rt_find_pod(rt, sandbox_id, &p, ret_err) < 0)
                return -ENOENT;
        cc_error *err = NULL;
        rt_agent *a = rt_pod_agent_get(rt, p, &err);
        bool hn = p->host_network;
        rt_pod_unref(rt, p);
        if (!a)
                return cc_error_propagate(ret_err, err);
        *ret_agent = a;
        if (ret_host_network)
                *ret_host_network = hn;
        return 0;
}
