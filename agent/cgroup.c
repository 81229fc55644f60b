/* SPDX-License-Identifier: Apache-2.0 */
/* cgroup v2 for containers: one directory per container under the agent's
 * cgroup root (<root>/<cgroupsPath> or <root>/cocoon/<id>), limits from the
 * OCI resources, freeze, kill and statistics. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"

static int write_file(const char *dir, const char *file, const char *val)
{
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = write(fd, val, strlen(val));
        if (n < 0)
                return -errno;
        return 0;
}

static ssize_t read_file(const char *dir, const char *file, char *buf, size_t size)
{
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, size - 1);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return n;
}

int agent_cgroup_read_u64(const char *path, const char *file, const char *key, uint64_t *ret)
{
        char buf[8192];
        ssize_t n = read_file(path, file, buf, sizeof(buf));
        if (n < 0)
                return (int)n;
        if (!key) {
                if (strncmp(buf, "max", 3) == 0) {
                        *ret = UINT64_MAX;
                        return 0;
                }
                return sscanf(buf, "%" SCNu64, ret) == 1 ? 0 : -EBADMSG;
        }
        size_t kl = strlen(key);
        for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
                if (strncmp(line, key, kl) == 0 && line[kl] == ' ')
                        return sscanf(line + kl + 1, "%" SCNu64, ret) == 1 ? 0 : -EBADMSG;
        return -ENOENT;
}

/* Is the word w (e.g. "cpu") in the space-separated list l? */
static bool has_word(const char *l, const char *w)
{
        size_t n = strlen(w);
        for (const char *p = l; (p = strstr(p, w)); p += n)
                if ((p == l || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0))
                        return true;
        return false;
}

/* Turns the controllers on in every ancestor below the root (best effort:
 * a controller the kernel or the parent lacks just stays off). Only the
 * missing ones: each write re-applies the controllers to the subtree, a
 * few ms apiece in an emulated guest. */
static void enable_controllers(const char *root, const char *rel)
{
        static const char *const ctrls[] = { "+cpu", "+memory", "+pids", "+io" };
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", root);
        const char *s = rel;
        for (;;) {
                char have[256];
                if (read_file(dir, "cgroup.subtree_control", have, sizeof(have)) < 0)
                        have[0] = 0;
                for (size_t i = 0; i < CC_ARRAY_SIZE(ctrls); i++)
                        if (!has_word(have, ctrls[i] + 1))
                                write_file(dir, "cgroup.subtree_control", ctrls[i]);
                const char *e = strchr(s, '/');
                if (!e)
                        break;
                size_t l = strlen(dir);
                if (l + 1 + (size_t)(e - s) >= sizeof(dir))
                        break;
                snprintf(dir + l, sizeof(dir) - l, "/%.*s", (int)(e - s), s);
                s = e + 1;
        }
}

int agent_cgroup_create(const char *id, const Grpc__Spec *spec, char **ret_path, cc_error **ret_err)
{
        char rel[PATH_MAX];
        const char *cp = spec->linux && spec->linux->cgroupspath ? spec->linux->cgroupspath : "";
        /* systemd-style "slice:prefix:name" paths mean nothing in the guest. */
        if (!*cp || strchr(cp, ':')) {
                snprintf(rel, sizeof(rel), "cocoon/%s", id);
        } else {
                while (*cp == '/')
                        cp++;
                if (agent_validate_relpath("cgroupsPath", cp, ret_err) < 0)
                        return -EINVAL;
                snprintf(rel, sizeof(rel), "%s", cp);
        }
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s", agent.cgroup_root, rel) >= (int)sizeof(path))
                return cc_error_set(ret_err, -ENAMETOOLONG, "cgroup path too long");
        /* mkdir -p */
        size_t rl = strlen(agent.cgroup_root);
        for (char *p = path + rl + 1; ; p++) {
                if (*p == '/' || !*p) {
                        char c = *p;
                        *p = 0;
                        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                                return cc_error_errno(ret_err, "create cgroup %s", path);
                        *p = c;
                        if (!c)
                                break;
                }
        }
        enable_controllers(agent.cgroup_root, rel);
        if (spec->linux && spec->linux->resources) {
                int r = agent_cgroup_apply(path, spec->linux->resources, ret_err);
                if (r < 0) {
                        rmdir(path);
                        return r;
                }
        }
        *ret_path = strdup(path);
        if (!*ret_path) {
                rmdir(path);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int set(const char *path, const char *file, const char *val, cc_error **ret_err)
{
        int r = write_file(path, file, val);
        if (r < 0)
                return cc_error_set(ret_err, r == -ENOENT ? -EOPNOTSUPP : r,
                                    "cgroup %s: write %s=%s: %s%s", path, file, val, strerror(-r),
                                    r != -ENOENT ? ""
                                    : agent.guest ? " (controller not available)"
                                                  : " (controller not available: this host mounts cgroup v1 "
                                                    "controllers, and host-mode pods take limits only from the "
                                                    "unified hierarchy: boot with systemd.unified_cgroup_hierarchy=1)");
        return 0;
}

int agent_cgroup_apply(const char *path, const Grpc__LinuxResources *r, cc_error **ret_err)
{
        char v[64];
        if (r->memory) {
                const Grpc__LinuxMemory *m = r->memory;
                if (m->limit < 0 && m->limit != -1)
                        return cc_error_set(ret_err, -EINVAL, "memory limit %lld", (long long)m->limit);
                if (m->limit > 0) {
                        snprintf(v, sizeof(v), "%lld", (long long)m->limit);
                        if (set(path, "memory.max", v, ret_err) < 0)
                                return -1;
                }
                if (m->reservation > 0) {
                        snprintf(v, sizeof(v), "%lld", (long long)m->reservation);
                        if (set(path, "memory.low", v, ret_err) < 0)
                                return -1;
                }
                /* OCI swap is memory+swap; v2 wants swap alone. */
                if (m->swap > 0 || (m->swap == 0 && m->limit > 0)) {
                        long long sw = m->swap > 0 && m->limit > 0 ? m->swap - m->limit : m->swap;
                        snprintf(v, sizeof(v), "%lld", sw < 0 ? 0 : sw);
                        if (set(path, "memory.swap.max", v, ret_err) < 0 && (*ret_err)->code != -EOPNOTSUPP)
                                return -1;
                        cc_error_free(*ret_err);
                        *ret_err = NULL;
                } else if (m->swap == -1) {
                        write_file(path, "memory.swap.max", "max");
                }
        }
        if (r->cpu) {
                const Grpc__LinuxCPU *c = r->cpu;
                if (c->quota != 0 || c->period != 0) {
                        uint64_t period = c->period ? c->period : 100000;
                        if (period < 1000 || period > 1000000)
                                return cc_error_set(ret_err, -EINVAL, "cpu period %" PRIu64 " out of range", period);
                        if (c->quota > 0)
                                snprintf(v, sizeof(v), "%lld %" PRIu64, (long long)c->quota, period);
                        else
                                snprintf(v, sizeof(v), "max %" PRIu64, period);
                        if (set(path, "cpu.max", v, ret_err) < 0)
                                return -1;
                }
                if (c->shares) {
                        /* runc's conversion of v1 shares [2..262144] to weight [1..10000] */
                        uint64_t sh = CC_MIN(CC_MAX(c->shares, 2), 262144);
                        uint64_t w = 1 + ((sh - 2) * 9999) / 262142;
                        snprintf(v, sizeof(v), "%" PRIu64, w);
                        if (set(path, "cpu.weight", v, ret_err) < 0)
                                return -1;
                }
                if (c->cpus && *c->cpus && set(path, "cpuset.cpus", c->cpus, ret_err) < 0)
                        return -1;
        }
        if (r->pids && r->pids->limit != 0) {
                if (r->pids->limit > 0)
                        snprintf(v, sizeof(v), "%lld", (long long)r->pids->limit);
                else
                        snprintf(v, sizeof(v), "max");
                if (set(path, "pids.max", v, ret_err) < 0)
                        return -1;
        }
        if (r->blockio && r->blockio->weight) {
                snprintf(v, sizeof(v), "default %u", CC_MAX(1u, CC_MIN(10000u, r->blockio->weight)));
                if (set(path, "io.weight", v, ret_err) < 0)
                        return -1;
        }
        return 0;
}

int agent_cgroup_freeze(const char *path, bool frozen, cc_error **ret_err)
{
        if (set(path, "cgroup.freeze", frozen ? "1" : "0", ret_err) < 0)
                return (*ret_err)->code;
        /* Wait (bounded) for the freezer to settle: cgroup.events frozen. */
        for (int i = 0; i < 200; i++) {
                char buf[512];
                if (read_file(path, "cgroup.events", buf, sizeof(buf)) < 0)
                        break;
                char *f = strstr(buf, "frozen ");
                if (!f || (f[7] == '1') == frozen)
                        break;
                usleep(1000);
        }
        return 0;
}

int agent_cgroup_kill(const char *path)
{
        int r = write_file(path, "cgroup.kill", "1");
        if (r == -ENOENT) { /* before 5.14: signal each process */
                char buf[65536];
                if (read_file(path, "cgroup.procs", buf, sizeof(buf)) < 0)
                        return r;
                for (char *s = buf; *s;) {
                        pid_t pid = (pid_t)strtol(s, &s, 10);
                        if (pid > 0)
                                kill(pid, SIGKILL);
                        while (*s == '\n')
                                s++;
                        if (pid <= 0)
                                break;
                }
                return 0;
        }
        return r;
}

int agent_cgroup_remove(const char *path)
{
        if (rmdir(path) < 0 && errno != ENOENT)
                return -errno;
        /* Drop the cocoon/ parent too when it is empty and ours. */
        return 0;
}

/* ---- statistics ---------------------------------------------------------- */

static void *zalloc(size_t n) { return calloc(1, n); }

int agent_cgroup_stats(const char *path, Grpc__StatsContainerResponse *resp)
{
        Grpc__CgroupStats *cs = zalloc(sizeof(*cs));
        Grpc__CpuStats *cpu = zalloc(sizeof(*cpu));
        Grpc__CpuUsage *cu = zalloc(sizeof(*cu));
        Grpc__ThrottlingData *th = zalloc(sizeof(*th));
        Grpc__MemoryStats *ms = zalloc(sizeof(*ms));
        Grpc__MemoryData *mu = zalloc(sizeof(*mu)), *sw = zalloc(sizeof(*sw));
        Grpc__PidsStats *ps = zalloc(sizeof(*ps));
        if (!cs || !cpu || !cu || !th || !ms || !mu || !sw || !ps) {
                free(cs); free(cpu); free(cu); free(th); free(ms); free(mu); free(sw); free(ps);
                return -ENOMEM;
        }
        grpc__cgroup_stats__init(cs);
        grpc__cpu_stats__init(cpu);
        grpc__cpu_usage__init(cu);
        grpc__throttling_data__init(th);
        grpc__memory_stats__init(ms);
        grpc__memory_data__init(mu);
        grpc__memory_data__init(sw);
        grpc__pids_stats__init(ps);
        cpu->cpu_usage = cu;
        cpu->throttling_data = th;
        ms->usage = mu;
        ms->swap_usage = sw;
        cs->cpu_stats = cpu;
        cs->memory_stats = ms;
        cs->pids_stats = ps;
        resp->cgroup_stats = cs;

        uint64_t v;
        /* cpu.stat is in microseconds, the protocol (as runc) nanoseconds */
        if (agent_cgroup_read_u64(path, "cpu.stat", "usage_usec", &v) == 0)
                cu->total_usage = v * 1000;
        if (agent_cgroup_read_u64(path, "cpu.stat", "user_usec", &v) == 0)
                cu->usage_in_usermode = v * 1000;
        if (agent_cgroup_read_u64(path, "cpu.stat", "system_usec", &v) == 0)
                cu->usage_in_kernelmode = v * 1000;
        if (agent_cgroup_read_u64(path, "cpu.stat", "nr_periods", &v) == 0)
                th->periods = v;
        if (agent_cgroup_read_u64(path, "cpu.stat", "nr_throttled", &v) == 0)
                th->throttled_periods = v;
        if (agent_cgroup_read_u64(path, "cpu.stat", "throttled_usec", &v) == 0)
                th->throttled_time = v * 1000;
        if (agent_cgroup_read_u64(path, "memory.current", NULL, &v) == 0)
                mu->usage = v;
        if (agent_cgroup_read_u64(path, "memory.peak", NULL, &v) == 0)
                mu->max_usage = v;
        if (agent_cgroup_read_u64(path, "memory.max", NULL, &v) == 0)
                mu->limit = v;
        if (agent_cgroup_read_u64(path, "memory.events", "oom_kill", &v) == 0)
                mu->failcnt = v;
        if (agent_cgroup_read_u64(path, "memory.swap.current", NULL, &v) == 0)
                sw->usage = v;
        if (agent_cgroup_read_u64(path, "memory.swap.max", NULL, &v) == 0)
                sw->limit = v;
        if (agent_cgroup_read_u64(path, "memory.stat", "file", &v) == 0)
                ms->cache = v;
        ms->use_hierarchy = true;
        static const char *const keys[] = { "anon", "file", "kernel_stack", "slab", "sock", "shmem",
                                            "file_mapped", "file_dirty", "pgfault", "pgmajfault",
                                            "inactive_anon", "active_anon", "inactive_file", "active_file" };
        ms->stats = calloc(CC_ARRAY_SIZE(keys), sizeof(*ms->stats));
        for (size_t i = 0; ms->stats && i < CC_ARRAY_SIZE(keys); i++) {
                if (agent_cgroup_read_u64(path, "memory.stat", keys[i], &v) < 0)
                        continue;
                Grpc__MemoryStats__StatsEntry *e = zalloc(sizeof(*e));
                if (!e)
                        break;
                grpc__memory_stats__stats_entry__init(e);
                e->key = (char *)keys[i];
                e->value = v;
                ms->stats[ms->n_stats++] = e;
        }
        if (agent_cgroup_read_u64(path, "pids.current", NULL, &v) == 0)
                ps->current = v;
        if (agent_cgroup_read_u64(path, "pids.max", NULL, &v) == 0)
                ps->limit = v;
        /* io.stat: "MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.." per device */
        char buf[8192];
        if (read_file(path, "io.stat", buf, sizeof(buf)) > 0) {
                Grpc__BlkioStats *bs = zalloc(sizeof(*bs));
                if (bs) {
                        grpc__blkio_stats__init(bs);
                        cs->blkio_stats = bs;
                        size_t cap = 64;
                        bs->io_service_bytes_recursive = calloc(cap, sizeof(void *));
                        bs->io_serviced_recursive = calloc(cap, sizeof(void *));
                        for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line && bs->io_serviced_recursive &&
                             bs->io_service_bytes_recursive && bs->n_io_serviced_recursive + 2 <= cap;
                             line = strtok_r(NULL, "\n", &save)) {
                                unsigned maj, min;
                                unsigned long long rb = 0, wb = 0, ri = 0, wi = 0;
                                if (sscanf(line, "%u:%u rbytes=%llu wbytes=%llu rios=%llu wios=%llu", &maj, &min,
                                           &rb, &wb, &ri, &wi) < 2)
                                        continue;
                                const struct { const char *op; unsigned long long v; bool bytes; } ents[] = {
                                        { "Read", rb, true }, { "Write", wb, true },
                                        { "Read", ri, false }, { "Write", wi, false },
                                };
                                for (size_t i = 0; i < 4; i++) {
                                        Grpc__BlkioStatsEntry *e = zalloc(sizeof(*e));
                                        if (!e)
                                                break;
                                        grpc__blkio_stats_entry__init(e);
                                        e->major = maj;
                                        e->minor = min;
                                        e->op = (char *)ents[i].op;
                                        e->value = ents[i].v;
                                        if (ents[i].bytes)
                                                bs->io_service_bytes_recursive[bs->n_io_service_bytes_recursive++] = e;
                                        else
                                                bs->io_serviced_recursive[bs->n_io_serviced_recursive++] = e;
                                }
                        }
                }
        }
        return 0;
}

void agent_cgroup_stats_free(Grpc__StatsContainerResponse *resp)
{
        Grpc__CgroupStats *cs = resp->cgroup_stats;
        if (!cs)
                return;
        if (cs->cpu_stats) {
                free(cs->cpu_stats->cpu_usage);
                free(cs->cpu_stats->throttling_data);
                free(cs->cpu_stats);
        }
        if (cs->memory_stats) {
                for (size_t i = 0; i < cs->memory_stats->n_stats; i++)
                        free(cs->memory_stats->stats[i]);
                free(cs->memory_stats->stats);
                free(cs->memory_stats->usage);
                free(cs->memory_stats->swap_usage);
                free(cs->memory_stats);
        }
        if (cs->blkio_stats) {
                for (size_t i = 0; i < cs->blkio_stats->n_io_service_bytes_recursive; i++)
                        free(cs->blkio_stats->io_service_bytes_recursive[i]);
                for (size_t i = 0; i < cs->blkio_stats->n_io_serviced_recursive; i++)
                        free(cs->blkio_stats->io_serviced_recursive[i]);
                free(cs->blkio_stats->io_service_bytes_recursive);
                free(cs->blkio_stats->io_serviced_recursive);
                free(cs->blkio_stats);
        }
        free(cs->pids_stats);
        free(cs);
        resp->cgroup_stats = NULL;
}
