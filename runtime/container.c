/* SPDX-License-Identifier: Apache-2.0 */
/* CreateContainer, StartContainer, StopContainer, RemoveContainer,
 * ContainerStatus, ListContainers and ReopenContainerLog (see
 * runtime/container.h), and the exit waiter of a running container. */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/undo.h"
#include "common/user.h"
#include "runtime/internal.h"
#include "runtime/rootfs.h"
#include "runtime/spec.h"
#include "cocoon-agent.pb-c.h"

#define EXIT_DRAIN_MS 2000   /* output still in flight after the exit */
#define KILL_WAIT_S 10       /* after SIGKILL */
#define START_ERROR_EXIT 128 /* containerd's errorStartExitCode */
#define PID_TIMEOUT_MS 5000  /* asking the agent for the init's pid */

void rt_ctr_free(rt_ctr *c)
{
        if (!c)
                return;
        rt_ctr_io_free(c->io);
        if (c->config)
                protobuf_c_message_free_unpacked(&c->config->base, NULL);
        if (c->spec)
                rt_spec_free(c->spec);
        free(c->image_id);
        free(c->image_name);
        cc_strv_free(c->chain_ids);
        free(c->reason);
        free(c->message);
        free(c->log_path);
        free(c->rootfs);
        free(c->upper);
        free(c->dir);
        pthread_mutex_destroy(&c->op_lock);
        pthread_mutex_destroy(&c->save_lock);
        free(c);
}

void rt_ctr_unmount(rt_ctr *c)
{
        if (!c->dir)
                return;
        for (size_t i = 0; i < c->n_volumes; i++) {
                _cleanup_free_ char *t = NULL;
                _cleanup_error_ cc_error *err = NULL;
                if (asprintf(&t, "%s/mounts/%zu", c->dir, i) >= 0 && rt_volume_unbind(t, &err) < 0)
                        log_debug("container %.12s: %s", c->id, err->msg);
        }
        _cleanup_error_ cc_error *err = NULL;
        if (rt_rootfs_unmount(c->rootfs, c->upper, &err) < 0)
                log_warn("container %.12s: unmounting its rootfs: %s", c->id, err->msg);
        cc_error_free(TAKE_PTR(err));
        if (cc_rm_rf(c->dir, &err) < 0)
                log_warn("container %.12s: %s", c->id, err->msg);
}

static int parse_signal(const char *s)
{
        static const struct { const char *name; int sig; } sigs[] = {
                { "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "KILL", SIGKILL },
                { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "TERM", SIGTERM }, { "STOP", SIGSTOP },
                { "WINCH", SIGWINCH }, { "PWR", SIGPWR }, { "ABRT", SIGABRT }, { "ALRM", SIGALRM },
                { "CONT", SIGCONT },
        };
        if (!s || !*s)
                return 0;
        char *end;
        long n = strtol(s, &end, 10);
        if (*end == 0)
                return n > 0 && n < 65 ? (int)n : 0;
        if (strncasecmp(s, "SIG", 3) == 0)
                s += 3;
        for (size_t i = 0; i < CC_ARRAY_SIZE(sigs); i++)
                if (strcasecmp(s, sigs[i].name) == 0)
                        return sigs[i].sig;
        if (strncasecmp(s, "RTMIN+", 6) == 0) {
                n = strtol(s + 6, &end, 10);
                if (*end == 0 && n >= 0 && SIGRTMIN + n <= SIGRTMAX)
                        return SIGRTMIN + (int)n;
        }
        return 0;
}

/* ---- exit waiter --------------------------------------------------------------------- */

typedef struct waiter_job {
        rt_runtime *rt;
        rt_ctr *c;
        rt_agent *a;
        rt_ctr_io *io;
} waiter_job;

static void set_exited(rt_runtime *rt, rt_ctr *c, int status, const char *reason, const char *message)
{
        pthread_mutex_lock(&rt->lock);
        bool changed = c->state == RT_CTR_RUNNING;
        if (changed) {
                c->state = RT_CTR_EXITED;
                c->exit_code = status;
                c->finished_at_ns = rt_now_ns();
                free(c->reason);
                free(c->message);
                c->reason = strdup(c->oom_killed ? "OOMKilled" : reason ? reason : status == 0 ? "Completed" : "Error");
                c->message = strdup(message ? message : "");
                pthread_cond_broadcast(&rt->cond);
                rt_events_publish(rt, RT_EVENT_STOPPED, c->id, c->pod->id);
        }
        pthread_mutex_unlock(&rt->lock);
        if (changed) {
                _cleanup_error_ cc_error *err = NULL;
                if (rt_state_save_ctr(rt, c, &err) < 0)
                        log_warn("%s", err->msg);
        }
}

static void *waiter_main(void *arg)
{
        waiter_job *j = arg;
        rt_runtime *rt = j->rt;
        rt_ctr *c = j->c;
        int status = 0;
        _cleanup_error_ cc_error *err = NULL;
        int r = rt_agent_wait(j->a, c->id, NULL, 0, &status, &err);
        if (r == 0) {
                /* the output that was in flight goes to the log first */
                _cleanup_error_ cc_error *e = NULL;
                if (rt_ctr_io_wait_drained(j->io, EXIT_DRAIN_MS, &e) < 0)
                        log_debug("%s", e->msg);
                log_debug("container %.12s exited with status %d", c->id, status);
                set_exited(rt, c, status, NULL, NULL);
        } else {
                pthread_mutex_lock(&rt->lock);
                bool quiet = rt->closing || c->removed || c->state != RT_CTR_RUNNING;
                rt_pod *p = c->pod;
                pthread_mutex_unlock(&rt->lock);
                if (!quiet) {
                        pthread_mutex_lock(&rt->lock);
                        const vmm_ops *ops = p->vmm ? vmm_get_ops(p->vmm) : NULL;
                        bool alive = ops && ops->alive ? ops->alive(p->vmm) : p->vmm != NULL;
                        pthread_mutex_unlock(&rt->lock);
                        if (!alive)
                                rt_pod_mark_dead(rt, p, p->mode == RT_POD_VM ? "pod VM exited" : "pod agent exited");
                        else if (!rt_agent_is_closed(j->a))
                                set_exited(rt, c, 255, "Error", err->msg);
                        /* else: a lost connection; the re-dial starts a new waiter */
                }
        }
        rt_ctr_io_unref(j->io);
        rt_agent_unref(j->a);
        rt_ctr_unref(rt, c);
        free(j);
        rt_thread_done(rt);
        return NULL;
}

static int start_waiter(rt_runtime *rt, rt_ctr *c, rt_agent *a, cc_error **ret_err)
{
        waiter_job *j = calloc(1, sizeof(*j));
        if (!j)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        j->rt = rt;
        j->c = rt_ctr_ref(c);
        j->a = rt_agent_ref(a);
        pthread_mutex_lock(&rt->lock);
        j->io = c->io ? rt_ctr_io_ref(c->io) : NULL;
        pthread_mutex_unlock(&rt->lock);
        int r = rt_thread_start(rt, waiter_main, j, ret_err);
        if (r < 0) {
                rt_ctr_io_unref(j->io);
                rt_agent_unref(j->a);
                rt_ctr_unref(rt, c);
                free(j);
        }
        return r;
}

/* The init's pid from the agent (cocoon.agent.Containers/Pid): only for
 * the verbose ContainerStatus, so a failure (an older agent) leaves 0. */
static void query_pid(rt_runtime *rt, rt_ctr *c, rt_agent *a)
{
        Cocoon__Agent__ContainerPidRequest req = COCOON__AGENT__CONTAINER_PID_REQUEST__INIT;
        req.container_id = c->id;
        ProtobufCMessage *resp = NULL;
        _cleanup_error_ cc_error *err = NULL;
        if (rt_agent_call_pb(a, "cocoon.agent.Containers", "Pid", &req.base,
                             &cocoon__agent__container_pid_response__descriptor, PID_TIMEOUT_MS, &resp, &err) < 0) {
                log_debug("container %.12s: pid: %s", c->id, err->msg);
                return;
        }
        int pid = ((Cocoon__Agent__ContainerPidResponse *)resp)->pid;
        protobuf_c_message_free_unpacked(resp, NULL);
        pthread_mutex_lock(&rt->lock);
        c->pid = pid > 0 ? pid : 0;
        pthread_mutex_unlock(&rt->lock);
}

void rt_ctr_reattach(rt_runtime *rt, rt_ctr *c, rt_agent *a)
{
        pthread_mutex_lock(&c->op_lock);
        pthread_mutex_lock(&rt->lock);
        bool running = c->state == RT_CTR_RUNNING && !c->removed;
        rt_ctr_io *io = c->io;
        pthread_mutex_unlock(&rt->lock);
        if (running) {
                _cleanup_error_ cc_error *err = NULL;
                if (io) {
                        rt_ctr_io_set_agent(io, a);
                } else if (rt_ctr_io_start(a, c->id, *c->log_path ? c->log_path : NULL, c->tty, &io, &err) == 0) {
                        pthread_mutex_lock(&rt->lock);
                        c->io = io;
                        pthread_mutex_unlock(&rt->lock);
                } else {
                        log_warn("container=%.12s output pump: %s", c->id, err->msg);
                        cc_error_free(TAKE_PTR(err));
                }
                if (start_waiter(rt, c, a, &err) < 0)
                        log_warn("container=%.12s exit waiter: %s", c->id, err->msg);
                query_pid(rt, c, a);
        }
        pthread_mutex_unlock(&c->op_lock);
}

/* ---- CreateContainer ----------------------------------------------------------------- */

typedef struct ctr_undo {
        rt_runtime *rt;
        rt_ctr *c;
        rt_agent *a;
} ctr_undo;

static void undo_table(void *arg)
{
        ctr_undo *u = arg;
        pthread_mutex_lock(&u->rt->lock);
        rt_table_del_ctr(u->rt, u->c);
        pthread_mutex_unlock(&u->rt->lock);
}

static void undo_mounts(void *arg)
{
        ctr_undo *u = arg;
        rt_ctr_unmount(u->c);
}

static void undo_agent_ctr(void *arg)
{
        ctr_undo *u = arg;
        _cleanup_error_ cc_error *err = NULL;
        if (rt_agent_remove_container(u->a, u->c->id, KILL_WAIT_S, 0, &err) < 0)
                log_debug("container %.12s undo: %s", u->c->id, err->msg);
}

static void undo_records(void *arg)
{
        ctr_undo *u = arg;
        (void)rt_state_delete_ctr(u->rt, u->c);
}

static int check_config(const Runtime__V1__ContainerConfig *config, cc_error **ret_err)
{
        if (!config || !config->metadata || !config->metadata->name || !*config->metadata->name)
                return cc_error_set(ret_err, -EINVAL, "container config: metadata.name is required");
        if (strlen(config->metadata->name) > 253)
                return cc_error_set(ret_err, -EINVAL, "container config: name longer than 253 bytes");
        if (!config->image || !config->image->image || !*config->image->image)
                return cc_error_set(ret_err, -EINVAL, "container config: image is required");
        if (config->log_path && *config->log_path && !cc_path_is_safe_relative(config->log_path))
                return cc_error_set(ret_err, -EINVAL, "container config: log_path '%.80s' must be relative, without '..'",
                                    config->log_path);
        for (size_t i = 0; i < config->n_mounts; i++) {
                const Runtime__V1__Mount *m = config->mounts[i];
                if (!m->host_path || m->host_path[0] != '/')
                        return cc_error_set(ret_err, -EINVAL, "mount %zu: host_path '%.80s' must be absolute", i,
                                            m->host_path ? m->host_path : "");
                if (!m->container_path || m->container_path[0] != '/')
                        return cc_error_set(ret_err, -EINVAL, "mount %zu: container_path '%.80s' must be absolute", i,
                                            m->container_path ? m->container_path : "");
        }
        return 0;
}

static bool same_ctr_metadata(const rt_ctr *a, const Runtime__V1__ContainerConfig *b)
{
        return strcmp(a->config->metadata->name, b->metadata->name) == 0 &&
               a->config->metadata->attempt == b->metadata->attempt;
}

static int ctr_volumes(rt_runtime *rt, rt_ctr *c, rt_spec_mount *sm, char **guest, cc_error **ret_err)
{
        const Runtime__V1__ContainerConfig *cfg = c->config;
        rt_pod *p = c->pod;
        for (size_t i = 0; i < cfg->n_mounts; i++) {
                const Runtime__V1__Mount *m = cfg->mounts[i];
                sm[i].cri = m;
                if (p->mode == RT_POD_HOST) {
                        sm[i].source = m->host_path; /* the agent binds it, propagation included */
                        continue;
                }
                rt_propagation prop = RT_PROP_PRIVATE;
                if (m->propagation == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER)
                        prop = RT_PROP_HOST_TO_CONTAINER;
                else if (m->propagation == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL)
                        return cc_error_set(ret_err, -EINVAL,
                                            "mount %s: Bidirectional propagation needs a host-mode pod (the pod "
                                            "runs in a VM)",
                                            m->container_path);
                _cleanup_free_ char *target = NULL;
                if (asprintf(&target, "%s/mounts/%zu", c->dir, i) < 0 ||
                    asprintf(&guest[i], RT_GUEST_SHARE "/%s/mounts/%zu", c->id, i) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                if (rt_volume_bind(m->host_path, target, m->readonly, prop, ret_err) < 0)
                        return cc_error_prefix(ret_err, "mount %s", m->container_path);
                pthread_mutex_lock(&rt->lock);
                c->n_volumes = i + 1;
                pthread_mutex_unlock(&rt->lock);
                sm[i].source = guest[i];
        }
        return 0;
}

static int ctr_rootfs(rt_runtime *rt, rt_ctr *c, const image_info *img, cc_error **ret_err)
{
        size_t n = img->n_layers;
        if (n == 0)
                return cc_error_set(ret_err, -EINVAL, "image %s has no layers", img->id);
        _cleanup_strv_free_ char **lowers = calloc(n + 1, sizeof(char *));
        if (!lowers)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                const char *chain = img->layers[n - 1 - i].chain_id; /* top layer first */
                if (!chain || strncmp(chain, "sha256:", 7) != 0 || !cc_path_is_safe_relative(chain + 7) ||
                    strchr(chain + 7, '/'))
                        return cc_error_set(ret_err, -EINVAL, "image %s: bad layer chain id", img->id);
                if (asprintf(&lowers[i], "%s/%s/diff", rt->layers_root, chain + 7) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        int r = cc_mkdir_p(c->dir, 0755, ret_err);
        if (r < 0)
                return r;
        if (rt_rootfs_mount((const char *const *)lowers, n, c->upper, c->rootfs, false, ret_err) < 0)
                return cc_error_prefix(ret_err, "rootfs");
        return 0;
}

#define RT_USER_GROUPS_MAX 64 /* what the agent takes (AGENT_GROUPS_MAX) */

/* A VM pod's container: its user and groups are looked up here, in the
 * rootfs cocoond mounted, and the agent gets numbers (the same lookup the
 * agent would make, cc_user_resolve; in the guest each file read goes
 * through virtio-fs, ~10 ms of a container start under TCG). Execs inherit
 * the numbers. */
static int resolve_user(rt_ctr *c, cc_error **ret_err)
{
        Grpc__User *u = c->spec->process ? c->spec->process->user : NULL;
        if (!u || !u->username || !*u->username)
                return 0;
        uid_t uid;
        gid_t gid, groups[RT_USER_GROUPS_MAX];
        size_t n = 0;
        int r = cc_user_resolve(c->rootfs, u->username, u->uid, &uid, &gid, groups, RT_USER_GROUPS_MAX, &n,
                                ret_err);
        if (r < 0)
                return r;
        if (u->n_additionalgids > RT_USER_GROUPS_MAX - n)
                return cc_error_set(ret_err, -EINVAL, "too many supplemental groups");
        uint32_t *all = malloc((n + u->n_additionalgids + 1) * sizeof(uint32_t));
        if (!all)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                all[i] = groups[i];
        for (size_t i = 0; i < u->n_additionalgids; i++)
                all[n + i] = u->additionalgids[i];
        free(u->additionalgids);
        u->additionalgids = all;
        u->n_additionalgids += n;
        u->uid = uid;
        u->gid = gid;
        if (u->username != protobuf_c_empty_string)
                free(u->username);
        u->username = (char *)protobuf_c_empty_string;
        return 0;
}

int rt_container_create(rt_runtime *rt, const char *pod_id, const Runtime__V1__ContainerConfig *config,
                        const Runtime__V1__PodSandboxConfig *pod_config, char **ret_id, cc_error **ret_err)
{
        if (check_config(config, ret_err) < 0)
                return -EINVAL;
        rt_pod *p = NULL;
        if (rt_find_pod(rt, pod_id, &p, ret_err) < 0)
                return -ENOENT;
        pthread_mutex_lock(&p->op_lock);
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        _cleanup_image_info_ image_info *img = NULL;
        _cleanup_error_ cc_error *ierr = NULL;
        rt_agent *agent = NULL;
        rt_ctr *c = NULL;
        ctr_undo cu = { rt, NULL, NULL };
        _cleanup_free_ rt_spec_mount *sm = NULL;
        _cleanup_strv_free_ char **guest = NULL;
        _cleanup_free_ char *root_path = NULL, *hosts = NULL, *resolv = NULL, *hostname = NULL;
        int r;
        (void)pod_config; /* the recorded config is authoritative */

        if (!(agent = rt_pod_agent_get(rt, p, ret_err))) {
                r = (*ret_err)->code;
                cc_error_prefix(ret_err, "CreateContainer");
                goto out;
        }
        if ((r = image_db_get(rt->images, config->image->image, &img, &ierr)) < 0) {
                if (r == -ENOENT)
                        r = cc_error_set(ret_err, -ENOENT, "image %s not found", config->image->image);
                else
                        r = cc_error_propagate(ret_err, TAKE_PTR(ierr));
                goto out;
        }
        if (!(c = rt_ctr_new())) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto out;
        }
        c->pod = rt_pod_ref(p);
        cu.c = c;
        cu.a = agent;
        c->config = rt_proto_copy(&config->base);
        c->image_id = strdup(img->id);
        c->image_name = strdup(config->image->image);
        c->chain_ids = calloc(img->n_layers + 1, sizeof(char *));
        c->reason = strdup("");
        c->message = strdup("");
        c->created_at_ns = rt_now_ns();
        c->state = RT_CTR_CREATED;
        c->creating = true;
        c->tty = config->tty;
        c->stdin_ = config->stdin;
        c->stop_signal = img->config ? parse_signal(img->config->stop_signal) : 0;
        bool ok = c->config && c->image_id && c->image_name && c->chain_ids && c->reason && c->message;
        for (size_t i = 0; ok && i < img->n_layers; i++)
                ok = (c->chain_ids[i] = rt_strdup0(img->layers[i].chain_id)) != NULL;
        const char *logdir = p->config->log_directory;
        if (ok && logdir && *logdir && config->log_path && *config->log_path)
                ok = asprintf(&c->log_path, "%s/%s", logdir, config->log_path) >= 0;
        else if (ok)
                ok = (c->log_path = strdup("")) != NULL;
        if (!ok || (r = cc_id_new(c->id, ret_err)) < 0 || rt_ctr_set_paths(c) < 0) {
                r = ret_err && *ret_err ? (*ret_err)->code : cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto out;
        }

        /* duplicate metadata in this pod (including ones being created) */
        pthread_mutex_lock(&rt->lock);
        r = 0;
        for (size_t i = 0; i < rt->n_ctrs; i++)
                if (rt->ctrs[i]->pod == p && same_ctr_metadata(rt->ctrs[i], config)) {
                        r = cc_error_set(ret_err, -EEXIST,
                                         "container with name '%s' (attempt %u) already exists in pod %.12s: %s",
                                         config->metadata->name, config->metadata->attempt, p->id,
                                         rt->ctrs[i]->id);
                        break;
                }
        if (r == 0 && rt_table_add_ctr(rt, c) < 0)
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        pthread_mutex_unlock(&rt->lock);
        if (r < 0)
                goto out;
        cc_undo_push(&undo, undo_table, &cu, NULL);

        /* rootfs and volumes */
        cc_undo_push(&undo, undo_mounts, &cu, NULL);
        if ((r = ctr_rootfs(rt, c, img, ret_err)) < 0)
                goto out;
        size_t nm = config->n_mounts;
        sm = calloc(nm + 1, sizeof(*sm));
        guest = calloc(nm + 1, sizeof(char *));
        if (!sm || !guest) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto out;
        }
        if ((r = ctr_volumes(rt, c, sm, guest, ret_err)) < 0)
                goto out;

        /* the OCI spec */
        bool vm = p->mode == RT_POD_VM;
        const char *etc = vm ? RT_GUEST_SHARE "/etc" : p->etc_dir;
        if ((vm ? asprintf(&root_path, "%s/rootfs", c->id) : asprintf(&root_path, "%s", c->rootfs)) < 0 ||
            asprintf(&hosts, "%s/hosts", etc) < 0 || asprintf(&resolv, "%s/resolv.conf", etc) < 0 ||
            asprintf(&hostname, "%s/hostname", etc) < 0) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto out;
        }
        rt_spec_input in = {
                .ctr = c->config,
                .pod = p->config,
                .image = img->config,
                .sandbox_id = p->id,
                .container_id = c->id,
                .root_path = root_path,
                .mounts = sm,
                .n_mounts = nm,
                .host_mode = !vm,
                .pod_netns = vm ? NULL : p->net ? p->net->netns_path : p->lo_netns,
                .seccomp_dir = rt->cfg->runtime.seccomp_dir,
                .hosts_path = hosts,
                .resolv_path = resolv,
                .hostname_path = hostname,
        };
        if ((r = rt_spec_build(&in, &c->spec, ret_err)) < 0)
                goto out;
        if (vm && (r = resolve_user(c, ret_err)) < 0)
                goto out;

        /* the agent */
        /* The pod's pid namespace (made by CreateSandbox when the pod's pid
         * mode is POD) is joined by containers whose own mode is POD. */
        const Runtime__V1__NamespaceOption *cns = c->config->linux && c->config->linux->security_context
                ? c->config->linux->security_context->namespace_options : NULL;
        bool join_pidns = cns && cns->pid == RUNTIME__V1__NAMESPACE_MODE__POD;
        if ((r = rt_agent_create_container(agent, c->id, c->spec, NULL, 0, join_pidns, 0, ret_err)) < 0) {
                cc_error_prefix(ret_err, "CreateContainer");
                goto out;
        }
        cc_undo_push(&undo, undo_agent_ctr, &cu, NULL);
        cc_undo_push(&undo, undo_records, &cu, NULL);
        if ((r = rt_state_save_ctr(rt, c, ret_err)) < 0)
                goto out;
        char *id = strdup(c->id);
        if (!id) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto out;
        }
        cc_undo_disarm(&undo);
        pthread_mutex_lock(&rt->lock);
        c->creating = false;
        pthread_mutex_unlock(&rt->lock);
        rt_events_publish(rt, RT_EVENT_CREATED, c->id, p->id);
        *ret_id = id;
        r = 0;
out:
        cc_undo_run(&undo);
        pthread_mutex_unlock(&p->op_lock);
        rt_agent_unref(agent);
        rt_ctr_unref(rt, c);
        rt_pod_unref(rt, p);
        return r;
}

/* ---- StartContainer ---------------------------------------------------------------- */

int rt_container_start(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        rt_ctr *c = NULL;
        if (rt_find_ctr(rt, id, &c, ret_err) < 0)
                return -ENOENT;
        pthread_mutex_lock(&c->op_lock);
        int r = 0;
        rt_agent *a = NULL;
        rt_ctr_io *io = NULL;
        _cleanup_error_ cc_error *err = NULL;
        pthread_mutex_lock(&rt->lock);
        rt_ctr_state st = c->state;
        pthread_mutex_unlock(&rt->lock);
        if (st != RT_CTR_CREATED) {
                r = cc_error_set(ret_err, -EBUSY, "container %.12s is %s, not created", c->id,
                                 rt_ctr_state_to_string(st));
                goto out;
        }
        if (!(a = rt_pod_agent_get(rt, c->pod, ret_err))) {
                r = (*ret_err)->code;
                goto out;
        }
        if (*c->log_path) {
                _cleanup_free_ char *d = strdup(c->log_path);
                if (!d || (r = cc_mkdir_p(dirname(d), 0755, ret_err)) < 0) {
                        r = r < 0 ? cc_error_prefix(ret_err, "log directory") : cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto out;
                }
        }
        if ((r = rt_ctr_io_start(a, c->id, *c->log_path ? c->log_path : NULL, c->tty, &io, ret_err)) < 0)
                goto out;
        if ((r = rt_agent_start_container(a, c->id, 0, ret_err)) < 0) {
                rt_ctr_io_free(io);
                pthread_mutex_lock(&rt->lock);
                c->state = RT_CTR_EXITED;
                c->exit_code = START_ERROR_EXIT;
                c->finished_at_ns = rt_now_ns();
                free(c->reason);
                free(c->message);
                c->reason = strdup("StartError");
                c->message = strdup((*ret_err)->msg);
                pthread_cond_broadcast(&rt->cond);
                pthread_mutex_unlock(&rt->lock);
                rt_events_publish(rt, RT_EVENT_STOPPED, c->id, c->pod->id);
                (void)rt_state_save_ctr(rt, c, NULL);
                goto out;
        }
        pthread_mutex_lock(&rt->lock);
        c->io = io;
        c->state = RT_CTR_RUNNING;
        c->started_at_ns = rt_now_ns();
        pthread_mutex_unlock(&rt->lock);
        rt_events_publish(rt, RT_EVENT_STARTED, c->id, c->pod->id);
        query_pid(rt, c, a);
        if (rt_state_save_ctr(rt, c, &err) < 0)
                log_warn("%s", err->msg);
        if ((r = start_waiter(rt, c, a, ret_err)) < 0)
                cc_error_prefix(ret_err, "container %.12s", c->id);
out:
        pthread_mutex_unlock(&c->op_lock);
        rt_agent_unref(a);
        rt_ctr_unref(rt, c);
        return r;
}

/* ---- StopContainer --------------------------------------------------------------------- */

/* Waits (rt->lock held) until c is no longer RUNNING or timeout_s passed. */
static bool wait_not_running(rt_runtime *rt, rt_ctr *c, int64_t timeout_s)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_s;
        while (c->state == RT_CTR_RUNNING)
                if (pthread_cond_timedwait(&rt->cond, &rt->lock, &ts) == ETIMEDOUT)
                        break;
        return c->state != RT_CTR_RUNNING;
}

int rt_ctr_stop(rt_runtime *rt, rt_ctr *c, int64_t timeout_s, cc_error **ret_err)
{
        pthread_mutex_lock(&c->op_lock);
        int r = 0;
        _cleanup_error_ cc_error *err = NULL;
        pthread_mutex_lock(&rt->lock);
        bool running = c->state == RT_CTR_RUNNING;
        rt_agent *a = running && c->pod->agent ? rt_agent_ref(c->pod->agent) : NULL;
        pthread_mutex_unlock(&rt->lock);
        if (!running)
                goto out;
        if (!a) {
                /* no agent to ask (dead or reconnecting pod) */
                set_exited(rt, c, 137, "Error", "stopped without an agent connection");
                goto out;
        }
        if (timeout_s > 0) {
                int sig = c->stop_signal ? c->stop_signal : SIGTERM;
                if (rt_agent_signal(a, c->id, NULL, sig, false, 0, &err) < 0)
                        log_debug("container %.12s signal %d: %s", c->id, sig, err->msg);
                pthread_mutex_lock(&rt->lock);
                bool done = wait_not_running(rt, c, timeout_s);
                pthread_mutex_unlock(&rt->lock);
                if (done)
                        goto out;
        }
        cc_error_free(TAKE_PTR(err));
        if (rt_agent_signal(a, c->id, NULL, SIGKILL, true, 0, &err) < 0)
                log_debug("container %.12s SIGKILL: %s", c->id, err->msg);
        pthread_mutex_lock(&rt->lock);
        bool done = wait_not_running(rt, c, KILL_WAIT_S);
        pthread_mutex_unlock(&rt->lock);
        if (!done)
                r = cc_error_set(ret_err, -ETIMEDOUT, "container %.12s did not exit within %ds of SIGKILL", c->id,
                                 KILL_WAIT_S);
out:
        pthread_mutex_unlock(&c->op_lock);
        rt_agent_unref(a);
        return r;
}

int rt_container_stop(rt_runtime *rt, const char *id, int64_t timeout_s, cc_error **ret_err)
{
        rt_ctr *c = NULL;
        if (rt_find_ctr(rt, id, &c, ret_err) < 0)
                return -ENOENT;
        int r = rt_ctr_stop(rt, c, timeout_s < 0 ? 0 : timeout_s, ret_err);
        rt_ctr_unref(rt, c);
        return r;
}

/* ---- UpdateContainerResources ----------------------------------------------------------- */

static Runtime__V1__LinuxContainerConfig *new_linux_config(void)
{
        Runtime__V1__LinuxContainerConfig *l = malloc(sizeof(*l));
        if (l)
                runtime__v1__linux_container_config__init(l);
        return l;
}

int rt_container_update_resources(rt_runtime *rt, const char *id, const Runtime__V1__LinuxContainerResources *res,
                                  cc_error **ret_err)
{
        if (!res)
                return 0; /* nothing for Linux (a Windows-only request) */
        Grpc__LinuxResources *oci = NULL;
        int r = rt_spec_resources(res, &oci, ret_err);
        if (r < 0)
                return r;
        rt_ctr *c = NULL;
        if (rt_find_ctr(rt, id, &c, ret_err) < 0) {
                protobuf_c_message_free_unpacked(&oci->base, NULL);
                return -ENOENT;
        }
        pthread_mutex_lock(&c->op_lock);
        pthread_mutex_lock(&rt->lock);
        bool live = c->state == RT_CTR_CREATED || c->state == RT_CTR_RUNNING;
        rt_agent *a = live && c->pod->agent && c->pod->state == RT_POD_READY ? rt_agent_ref(c->pod->agent) : NULL;
        pthread_mutex_unlock(&rt->lock);
        /* the config with the new resources, recorded once the agent applied them */
        Runtime__V1__ContainerConfig *cfg = NULL;
        Runtime__V1__LinuxContainerResources *copy = NULL;
        if (!live)
                r = cc_error_set(ret_err, -EBUSY, "container %.12s has exited", c->id);
        else if (!a)
                r = cc_error_set(ret_err, -EBUSY, "container %.12s: its pod's agent is not connected", c->id);
        else if (!(cfg = rt_proto_copy(&c->config->base)) || !(copy = rt_proto_copy(&res->base)))
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        else if (!cfg->linux && !(cfg->linux = new_linux_config()))
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        else if ((r = rt_agent_update_container(a, c->id, oci, 0, ret_err)) < 0)
                cc_error_prefix(ret_err, "UpdateContainer");
        if (r >= 0) {
                if (cfg->linux->resources)
                        protobuf_c_message_free_unpacked(&cfg->linux->resources->base, NULL);
                cfg->linux->resources = TAKE_PTR(copy);
                pthread_mutex_lock(&rt->lock);
                Runtime__V1__ContainerConfig *old = c->config;
                c->config = TAKE_PTR(cfg);
                pthread_mutex_unlock(&rt->lock);
                protobuf_c_message_free_unpacked(&old->base, NULL);
                _cleanup_error_ cc_error *err = NULL;
                if (rt_state_save_ctr(rt, c, &err) < 0)
                        log_warn("container=%.12s recording its new resources: %s", c->id, err->msg);
                log_info("container=%.12s resources updated", c->id);
        }
        if (copy)
                protobuf_c_message_free_unpacked(&copy->base, NULL);
        if (cfg)
                protobuf_c_message_free_unpacked(&cfg->base, NULL);
        protobuf_c_message_free_unpacked(&oci->base, NULL);
        rt_agent_unref(a);
        pthread_mutex_unlock(&c->op_lock);
        rt_ctr_unref(rt, c);
        return r;
}

/* ---- RemoveContainer ------------------------------------------------------------------- */

int rt_ctr_remove(rt_runtime *rt, rt_ctr *c, cc_error **ret_err)
{
        int r = rt_ctr_stop(rt, c, 0, ret_err);
        if (r < 0)
                return r;
        pthread_mutex_lock(&c->op_lock);
        pthread_mutex_lock(&rt->lock);
        rt_agent *a = c->pod->agent && c->pod->state == RT_POD_READY ? rt_agent_ref(c->pod->agent) : NULL;
        rt_ctr_io *io = TAKE_PTR(c->io);
        bool removed = c->removed;
        pthread_mutex_unlock(&rt->lock);
        if (!removed) {
                if (a) {
                        _cleanup_error_ cc_error *err = NULL;
                        if (rt_agent_remove_container(a, c->id, KILL_WAIT_S, 0, &err) < 0 && err->code != -ENOENT)
                                log_warn("container=%.12s agent RemoveContainer: %s", c->id, err->msg);
                }
                rt_ctr_io_free(io);
                io = NULL;
                rt_ctr_unmount(c);
                if ((r = rt_state_delete_ctr(rt, c)) < 0)
                        cc_error_set(ret_err, r, "container %.12s: removing its record: %s", c->id, strerror(-r));
                pthread_mutex_lock(&rt->lock);
                rt_table_del_ctr(rt, c);
                pthread_mutex_unlock(&rt->lock);
                rt_events_publish(rt, RT_EVENT_DELETED, c->id, c->pod->id);
        }
        rt_ctr_io_free(io);
        pthread_mutex_unlock(&c->op_lock);
        rt_agent_unref(a);
        return r;
}

int rt_container_remove(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        rt_ctr *c = NULL;
        _cleanup_error_ cc_error *err = NULL;
        if (rt_find_ctr(rt, id, &c, &err) < 0)
                return err->code == -ENOENT ? 0 : cc_error_propagate(ret_err, TAKE_PTR(err));
        int r = rt_ctr_remove(rt, c, ret_err);
        rt_ctr_unref(rt, c);
        return r;
}

/* ---- status / list / log ------------------------------------------------------------- */

void rt_ctr_info_free(rt_ctr_info *c)
{
        if (!c)
                return;
        if (c->config)
                protobuf_c_message_free_unpacked(&c->config->base, NULL);
        free(c->id);
        free(c->sandbox_id);
        free(c->image_id);
        free(c->image_name);
        free(c->reason);
        free(c->message);
        free(c->log_path);
        free(c);
}

void rt_ctr_info_list_free(rt_ctr_info **list, size_t n)
{
        for (size_t i = 0; list && i < n; i++)
                rt_ctr_info_free(list[i]);
        free(list);
}

/* Under rt->lock. */
static rt_ctr_info *ctr_info(rt_ctr *c)
{
        rt_ctr_info *i = calloc(1, sizeof(*i));
        if (!i)
                return NULL;
        i->id = strdup(c->id);
        i->sandbox_id = strdup(c->pod->id);
        i->config = rt_proto_copy(&c->config->base);
        i->image_id = rt_strdup0(c->image_id);
        i->image_name = rt_strdup0(c->image_name);
        i->state = c->state;
        i->created_at_ns = c->created_at_ns;
        i->started_at_ns = c->started_at_ns;
        i->finished_at_ns = c->finished_at_ns;
        i->exit_code = c->exit_code;
        i->pid = c->state == RT_CTR_RUNNING ? c->pid : 0;
        i->reason = rt_strdup0(c->reason);
        i->message = rt_strdup0(c->message);
        i->log_path = rt_strdup0(c->log_path);
        if (!i->id || !i->sandbox_id || !i->config || !i->image_id || !i->image_name || !i->reason ||
            !i->message || !i->log_path) {
                rt_ctr_info_free(i);
                return NULL;
        }
        return i;
}

int rt_container_status(rt_runtime *rt, const char *id, rt_ctr_info **ret, cc_error **ret_err)
{
        rt_ctr *c = NULL;
        if (rt_find_ctr(rt, id, &c, ret_err) < 0)
                return -ENOENT;
        pthread_mutex_lock(&rt->lock);
        rt_ctr_info *i = ctr_info(c);
        pthread_mutex_unlock(&rt->lock);
        rt_ctr_unref(rt, c);
        if (!i)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = i;
        return 0;
}

static int by_created(const void *a, const void *b)
{
        const rt_ctr_info *x = *(rt_ctr_info *const *)a, *y = *(rt_ctr_info *const *)b;
        return x->created_at_ns < y->created_at_ns ? -1 : x->created_at_ns > y->created_at_ns;
}

int rt_container_list(rt_runtime *rt, rt_ctr_info ***ret, size_t *ret_n, cc_error **ret_err)
{
        pthread_mutex_lock(&rt->lock);
        rt_ctr_info **l = calloc(rt->n_ctrs + 1, sizeof(*l));
        size_t n = 0;
        bool ok = l != NULL;
        for (size_t i = 0; ok && i < rt->n_ctrs; i++) {
                if (rt->ctrs[i]->creating)
                        continue;
                ok = (l[n] = ctr_info(rt->ctrs[i])) != NULL;
                if (ok)
                        n++;
        }
        pthread_mutex_unlock(&rt->lock);
        if (!ok) {
                rt_ctr_info_list_free(l, n);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        qsort(l, n, sizeof(*l), by_created);
        *ret = l;
        *ret_n = n;
        return 0;
}

int rt_container_reopen_log(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        rt_ctr *c = NULL;
        if (rt_find_ctr(rt, id, &c, ret_err) < 0)
                return -ENOENT;
        pthread_mutex_lock(&rt->lock);
        rt_ctr_io *io = c->state == RT_CTR_RUNNING && c->io ? rt_ctr_io_ref(c->io) : NULL;
        pthread_mutex_unlock(&rt->lock);
        int r = 0;
        if (!io)
                r = cc_error_set(ret_err, -EBUSY, "container %.12s is not running", c->id);
        else
                r = rt_ctr_io_reopen_log(io, ret_err);
        rt_ctr_io_unref(io);
        rt_ctr_unref(rt, c);
        return r;
}
