/* Container stats (ContainerStats, ListContainerStats): CPU and memory from
 * the container's cgroup, read by the pod's agent (StatsContainer: inside
 * the VM, or on the host for a host-mode pod), and the writable layer's use:
 * in a VM the upper directory of the container's rootfs overlay is in guest
 * memory, measured by the agent (cocoon.agent.Containers/DiskUsage); in host
 * mode it is cocoond's own overlay upper directory, measured here. And what
 * a pod costs the host (PodSandboxStats): its VMM's and virtiofsd's CPU time
 * and PSS from /proc, the interfaces of its network namespace. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "cocoon-agent.pb-c.h"
#include "net-cni/netns.h"
#include "runtime/internal.h"

#define STATS_TIMEOUT_MS 10000
#define DU_MAX_ENTRIES 200000 /* a writable layer with more is counted up to here */

/* The writable layer of a VM container, from its agent. */
static int guest_disk_usage(rt_agent *a, const char *id, rt_ctr_stats *ret, cc_error **ret_err)
{
        Cocoon__Agent__ContainerDiskUsageRequest req = COCOON__AGENT__CONTAINER_DISK_USAGE_REQUEST__INIT;
        req.container_id = (char *)id;
        ProtobufCMessage *resp = NULL;
        if (rt_agent_call_pb(a, "cocoon.agent.Containers", "DiskUsage", &req.base,
                             &cocoon__agent__container_disk_usage_response__descriptor, STATS_TIMEOUT_MS, &resp,
                             ret_err) < 0)
                return -EIO;
        const Cocoon__Agent__ContainerDiskUsageResponse *d = (const void *)resp;
        if (d->present && d->path && *d->path && strlen(d->path) < 4096) {
                ret->have_fs = true;
                ret->fs_used_bytes = d->used_bytes;
                ret->fs_inodes_used = d->inodes_used;
                ret->fs_mountpoint = strdup(d->path);
                ret->have_fs = ret->fs_mountpoint != NULL;
        }
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

void rt_ctr_stats_clear(rt_ctr_stats *s)
{
        free(s->fs_mountpoint);
        memset(s, 0, sizeof(*s));
}

int rt_container_stats(rt_runtime *rt, const char *id, bool partial_ok, rt_ctr_stats *ret, cc_error **ret_err)
{
        memset(ret, 0, sizeof(*ret));
        rt_ctr *c = NULL;
        if (rt_find_ctr(rt, id, &c, ret_err) < 0)
                return -ENOENT;
        pthread_mutex_lock(&rt->lock);
        bool running = c->state == RT_CTR_RUNNING && !c->pod->dead;
        bool vm = c->pod->mode == RT_POD_VM, alive = !c->pod->dead;
        char *upper = NULL;
        if (!vm && c->upper && asprintf(&upper, "%s/upper", c->upper) < 0)
                upper = NULL;
        pthread_mutex_unlock(&rt->lock);
        ret->timestamp_ns = rt_now_ns();
        int r = 0;
        rt_agent *a = NULL;
        if (running || (vm && alive)) {
                _cleanup_error_ cc_error *err = NULL;
                a = rt_pod_agent_get(rt, c->pod, &err);
                if (!a)
                        log_debug("container=%.12s stats: %s", c->id, err->msg);
        }
        if (running) {
                _cleanup_error_ cc_error *err = NULL;
                rt_agent_stats st;
                if (a && rt_agent_stats_container(a, c->id, STATS_TIMEOUT_MS, &st, &err) == 0) {
                        ret->have_cpu_mem = true;
                        ret->cpu_usage_ns = st.cpu_usage_ns;
                        ret->memory_usage = st.memory_usage;
                        ret->memory_working_set = st.memory_working_set;
                        ret->pids = st.pids;
                } else if (!partial_ok) {
                        r = cc_error_set(ret_err, err ? err->code : -EIO, "container %.12s: stats: %s", c->id,
                                         err ? err->msg : "no agent");
                } else {
                        log_debug("container=%.12s stats: %s", c->id, err ? err->msg : "no agent");
                }
        }
        if (r == 0 && vm && a) {
                _cleanup_error_ cc_error *err = NULL;
                if (guest_disk_usage(a, c->id, ret, &err) < 0)
                        log_debug("container=%.12s writable layer: %s", c->id, err ? err->msg : "?");
        }
        rt_agent_unref(a);
        if (r == 0 && upper) {
                int e = cc_disk_usage(upper, DU_MAX_ENTRIES, &ret->fs_used_bytes, &ret->fs_inodes_used);
                if (e == 0) {
                        ret->have_fs = true;
                        ret->fs_mountpoint = TAKE_PTR(upper);
                } else if (e != -ENOENT) {
                        log_debug("container=%.12s writable layer %s: %s", c->id, upper, strerror(-e));
                }
        }
        free(upper);
        rt_ctr_unref(rt, c);
        if (r < 0)
                rt_ctr_stats_clear(ret);
        return r;
}

/* ---- pod-level: the VM's host processes, the pod's interfaces ---------------------- */

/* utime + stime of every thread of pid, in ns; false if unreadable. */
static bool proc_cpu_ns(int pid, uint64_t *ret)
{
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (n <= 0)
                return false;
        buf[n] = 0;
        const char *p = strrchr(buf, ')'); /* comm may hold spaces and ')' */
        unsigned long long ut, st;
        /* after ")": state ppid pgrp session tty_nr tpgid flags minflt cminflt
         * majflt cmajflt utime stime */
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return false;
        long hz = sysconf(_SC_CLK_TCK);
        *ret = (ut + st) * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
        return true;
}

/* PSS of pid in bytes; false if unreadable. */
static bool proc_pss(int pid, uint64_t *ret)
{
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        while (f && fgets(line, sizeof(line), f)) {
                unsigned long long kb;
                if (sscanf(line, "Pss: %llu kB", &kb) == 1) {
                        *ret = kb * 1024;
                        return true;
                }
        }
        return false;
}

/* In the pod's network namespace: /proc/thread-self/net/dev is this
 * thread's namespace's (sysfs would still show the daemon's). */
static int read_ifstats(void *ud, cc_error **ret_err)
{
        rt_pod_stats *st = ud;
        _cleanup_fclose_ FILE *f = fopen("/proc/thread-self/net/dev", "re");
        if (!f)
                return cc_error_errno(ret_err, "/proc/thread-self/net/dev");
        char line[512];
        while (fgets(line, sizeof(line), f) && st->n_ifs < RT_POD_STATS_IFS) {
                char *colon = strchr(line, ':');
                if (!colon)
                        continue; /* the two header lines */
                *colon = 0;
                char *name = line + strspn(line, " ");
                size_t nl = strlen(name);
                /* loopback, and the taps cocoond mirrors a VM's NIC through */
                if (!strcmp(name, "lo") || nl >= sizeof(st->ifs[0].name) ||
                    (nl > 7 && !strcmp(name + nl - 7, "_cocoon")))
                        continue;
                unsigned long long v[11];
                if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                           &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]) != 11)
                        continue;
                rt_pod_ifstats *i = &st->ifs[st->n_ifs++];
                snprintf(i->name, sizeof(i->name), "%s", name);
                i->rx_bytes = v[0];
                i->rx_errors = v[2];
                i->tx_bytes = v[8];
                i->tx_errors = v[10];
        }
        return 0;
}

void rt_pod_host_stats(const rt_pod_info *p, rt_pod_stats *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->timestamp_ns = rt_now_ns();
        if (p->state != RT_POD_READY)
                return;
        if (p->mode == RT_POD_VM && p->vmm_pid > 0) {
                int pids[2] = { p->vmm_pid, p->virtiofsd_pid };
                uint64_t cpu = 0, mem = 0;
                bool ok = true;
                for (size_t i = 0; ok && i < 2; i++) {
                        uint64_t c, m;
                        if (pids[i] <= 0)
                                continue;
                        ok = proc_cpu_ns(pids[i], &c) && proc_pss(pids[i], &m);
                        cpu += c;
                        mem += m;
                }
                if (ok) {
                        ret->have_cpu_mem = true;
                        ret->cpu_usage_ns = cpu;
                        ret->memory_bytes = mem;
                }
        }
        if (!p->host_network && p->netns_path && *p->netns_path) {
                _cleanup_error_ cc_error *err = NULL;
                if (cni_netns_run(p->netns_path, read_ifstats, ret, &err) < 0) {
                        log_debug("pod=%.12s network stats: %s", p->id, err->msg);
                        ret->n_ifs = 0;
                }
        }
}
