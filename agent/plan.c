/* SPDX-License-Identifier: Apache-2.0 */
/* The exec plan: everything a container process needs to become itself,
 * resolved and validated in the agent (user lookup, capability masks,
 * seccomp BPF, rlimits), so that the forked child only makes system calls. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/user.h"

static const struct { const char *name; int res; } rlimit_names[] = {
        { "RLIMIT_CPU", RLIMIT_CPU }, { "RLIMIT_FSIZE", RLIMIT_FSIZE },
        { "RLIMIT_DATA", RLIMIT_DATA }, { "RLIMIT_STACK", RLIMIT_STACK },
        { "RLIMIT_CORE", RLIMIT_CORE }, { "RLIMIT_RSS", RLIMIT_RSS },
        { "RLIMIT_NPROC", RLIMIT_NPROC }, { "RLIMIT_NOFILE", RLIMIT_NOFILE },
        { "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK }, { "RLIMIT_AS", RLIMIT_AS },
        { "RLIMIT_LOCKS", RLIMIT_LOCKS }, { "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING },
        { "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE }, { "RLIMIT_NICE", RLIMIT_NICE },
        { "RLIMIT_RTPRIO", RLIMIT_RTPRIO }, { "RLIMIT_RTTIME", RLIMIT_RTTIME },
};

static int check_strv(const char *what, char **v, size_t n, bool need_one, cc_error **ret_err)
{
        if (need_one && n == 0)
                return cc_error_set(ret_err, -EINVAL, "%s must not be empty", what);
        if (n > AGENT_ARGS_MAX)
                return cc_error_set(ret_err, -EINVAL, "too many %s (%zu)", what, n);
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += strlen(v[i]) + 1;
        if (total > (1u << 20))
                return cc_error_set(ret_err, -E2BIG, "%s are larger than 1 MiB", what);
        return 0;
}

/* NULL terminated copy of a protobuf string array (pointers only). */
static char **strv_ref(char **v, size_t n)
{
        char **r = calloc(n + 1, sizeof(char *));
        if (r)
                memcpy(r, v, n * sizeof(char *));
        return r;
}

int agent_plan_build(agent_exec_plan *p, const Grpc__Process *proc, const Grpc__Spec *spec,
                     const char *rootfs, cc_error **ret_err)
{
        memset(p, 0, sizeof(*p));
        if (!proc)
                return cc_error_set(ret_err, -EINVAL, "no process in the request");
        if (check_strv("args", proc->args, proc->n_args, true, ret_err) < 0 ||
            check_strv("env", proc->env, proc->n_env, false, ret_err) < 0)
                return -EINVAL;
        if (!proc->args[0][0])
                return cc_error_set(ret_err, -EINVAL, "args[0] is empty");
        p->cwd = proc->cwd && *proc->cwd ? proc->cwd : "/";
        if (p->cwd[0] != '/' || strlen(p->cwd) >= PATH_MAX)
                return cc_error_set(ret_err, -EINVAL, "cwd '%.64s' is not an absolute path", p->cwd);
        p->terminal = proc->terminal;
        if (proc->consolesize) {
                p->rows = proc->consolesize->height;
                p->cols = proc->consolesize->width;
        }

        if (proc->user) {
                const Grpc__User *u = proc->user;
                p->set_user = true;
                p->uid = u->uid;
                p->gid = u->gid;
                if (u->username && *u->username) {
                        if (cc_user_resolve(rootfs, u->username, u->uid, &p->uid, &p->gid, p->groups,
                                            AGENT_GROUPS_MAX, &p->n_groups, ret_err) < 0)
                                return -EINVAL;
                }
                if (u->n_additionalgids > AGENT_GROUPS_MAX - p->n_groups)
                        return cc_error_set(ret_err, -EINVAL, "too many additional gids");
                for (size_t i = 0; i < u->n_additionalgids; i++)
                        p->groups[p->n_groups++] = u->additionalgids[i];
        }

        if (proc->capabilities) {
                const Grpc__LinuxCapabilities *c = proc->capabilities;
                p->has_caps = true;
                if (agent_caps_parse(c->bounding, c->n_bounding, &p->caps[0], ret_err) < 0 ||
                    agent_caps_parse(c->effective, c->n_effective, &p->caps[1], ret_err) < 0 ||
                    agent_caps_parse(c->permitted, c->n_permitted, &p->caps[2], ret_err) < 0 ||
                    agent_caps_parse(c->inheritable, c->n_inheritable, &p->caps[3], ret_err) < 0 ||
                    agent_caps_parse(c->ambient, c->n_ambient, &p->caps[4], ret_err) < 0)
                        return -EINVAL;
        }
        p->nnp = proc->nonewprivileges;

        if (proc->n_rlimits > AGENT_RLIMITS_MAX)
                return cc_error_set(ret_err, -EINVAL, "too many rlimits");
        for (size_t i = 0; i < proc->n_rlimits; i++) {
                const Grpc__POSIXRlimit *rl = proc->rlimits[i];
                size_t j;
                for (j = 0; j < CC_ARRAY_SIZE(rlimit_names); j++)
                        if (rl->type && strcmp(rl->type, rlimit_names[j].name) == 0)
                                break;
                if (j == CC_ARRAY_SIZE(rlimit_names))
                        return cc_error_set(ret_err, -EINVAL, "unknown rlimit '%.64s'", rl->type ? rl->type : "");
                if (rl->soft > rl->hard)
                        return cc_error_set(ret_err, -EINVAL, "rlimit %s: soft above hard", rl->type);
                p->rlimits[p->n_rlimits].res = rlimit_names[j].res;
                p->rlimits[p->n_rlimits].lim.rlim_cur = rl->soft;
                p->rlimits[p->n_rlimits].lim.rlim_max = rl->hard;
                p->n_rlimits++;
        }
        if (proc->oomscoreadj != 0) {
                if (proc->oomscoreadj < -1000 || proc->oomscoreadj > 1000)
                        return cc_error_set(ret_err, -EINVAL, "oom_score_adj %lld out of range",
                                            (long long)proc->oomscoreadj);
                p->set_oom = true;
                p->oom_score_adj = (int)proc->oomscoreadj;
        }

        if (spec && spec->linux && spec->linux->seccomp &&
            agent_seccomp_compile(spec->linux->seccomp, &p->seccomp, ret_err) < 0)
                return -EINVAL;

        p->args = strv_ref(proc->args, proc->n_args);
        p->env = strv_ref(proc->env, proc->n_env);
        if (!p->args || !p->env) {
                agent_plan_done(p);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

void agent_plan_done(agent_exec_plan *p)
{
        free(p->seccomp.filter);
        free(p->args);
        free(p->env);
        p->seccomp.filter = NULL;
        p->args = p->env = NULL;
}

static int load_seccomp(const agent_exec_plan *p)
{
        if (p->seccomp.len == 0)
                return 0;
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p->seccomp) < 0)
                return -errno;
        return 0;
}

/* Child side; only system calls. Order as runc: rlimits, oom, (seccomp
 * while still privileged when no_new_privs is off), the bounding set (while
 * CAP_SETPCAP is still effective), groups/gid/uid keeping capabilities, the
 * capability sets, no_new_privs, seccomp. */
int agent_plan_apply(const agent_exec_plan *p, const char **ret_what)
{
        for (size_t i = 0; i < p->n_rlimits; i++)
                if (setrlimit(p->rlimits[i].res, &p->rlimits[i].lim) < 0)
                        return *ret_what = "setrlimit", -errno;
        if (p->set_oom) {
                char buf[16];
                int n = snprintf(buf, sizeof(buf), "%d", p->oom_score_adj);
                int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
                if (fd < 0 || write(fd, buf, n) != n) {
                        int e = errno;
                        if (fd >= 0)
                                close(fd);
                        return *ret_what = "oom_score_adj", -e;
                }
                close(fd);
        }
        if (!p->nnp && load_seccomp(p) < 0)
                return *ret_what = "seccomp", -errno;
        if (p->has_caps) {
                int r = agent_caps_bound(p->caps[0]);
                if (r < 0)
                        return *ret_what = "capability bounding set", r;
        }
        if (p->set_user) {
                if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
                        return *ret_what = "PR_SET_KEEPCAPS", -errno;
                if (syscall(SYS_setgroups, p->n_groups, p->groups) < 0)
                        return *ret_what = "setgroups", -errno;
                if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
                        return *ret_what = "setgid", -errno;
                if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
                        return *ret_what = "setuid", -errno;
        }
        if (p->has_caps) {
                int r = agent_caps_apply(p->caps);
                if (r < 0)
                        return *ret_what = "capabilities", r;
        }
        if (p->nnp) {
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        return *ret_what = "no_new_privs", -errno;
                if (load_seccomp(p) < 0)
                        return *ret_what = "seccomp", -errno;
        }
        return 0;
}

static const char *env_get(char **env, const char *key)
{
        size_t k = strlen(key);
        for (char **e = env; *e; e++)
                if (strncmp(*e, key, k) == 0 && (*e)[k] == '=')
                        return *e + k + 1;
        return NULL;
}

int agent_plan_exec(const agent_exec_plan *p)
{
        const char *file = p->args[0];
        if (strchr(file, '/')) {
                execve(file, p->args, p->env);
                return -errno;
        }
        const char *path = env_get(p->env, "PATH");
        if (!path)
                path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        int err = -ENOENT;
        char buf[PATH_MAX];
        for (const char *s = path; ; ) {
                const char *e = strchr(s, ':');
                size_t n = e ? (size_t)(e - s) : strlen(s);
                if (n + strlen(file) + 2 <= sizeof(buf)) {
                        memcpy(buf, s, n);
                        if (n == 0)
                                buf[n++] = '.';
                        buf[n] = '/';
                        strcpy(buf + n + 1, file);
                        execve(buf, p->args, p->env);
                        if (errno != ENOENT && errno != ENOTDIR)
                                err = -errno;
                }
                if (!e)
                        break;
                s = e + 1;
        }
        return err;
}
