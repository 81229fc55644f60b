/* SPDX-License-Identifier: Apache-2.0 */
/* PodSandboxStats, ListPodSandboxStats. A pod's CPU and memory are what it
 * costs the node: for a VM pod its VMM's and virtiofsd's CPU time and PSS
 * (the guest's kernel and page cache included, which no container's cgroup
 * shows), for a host-mode pod the sum of its containers'. The network is
 * the pod namespace's interfaces as the pod sees them; processes and the
 * per-container entries come from the containers' cgroups (the agent).
 * usage_nano_cores as for containers (cri_cpu_rate). ListPodSandboxStats
 * skips pods that are not ready, as containerd does. */
#include <errno.h>
#include <string.h>

#include "cri-server/pod-convert.h"

static Runtime__V1__NetworkInterfaceUsage *iface(cri_ctx *ctx, const rt_pod_ifstats *i)
{
        Runtime__V1__NetworkInterfaceUsage *o = CRI_NEW(ctx, runtime__v1__network_interface_usage);
        o->name = cri_strdup(ctx, i->name);
        o->rx_bytes = cri_u64(ctx, i->rx_bytes);
        o->rx_errors = cri_u64(ctx, i->rx_errors);
        o->tx_bytes = cri_u64(ctx, i->tx_bytes);
        o->tx_errors = cri_u64(ctx, i->tx_errors);
        return o;
}

static Runtime__V1__PodSandboxStats *pod_stats(cri_ctx *ctx, rt_runtime *rt, const rt_pod_info *p,
                                               rt_ctr_info *const *ctrs, size_t n_ctrs)
{
        Runtime__V1__PodSandboxStats *o = CRI_NEW(ctx, runtime__v1__pod_sandbox_stats);
        o->attributes = cri_pod_attributes(ctx, p);
        Runtime__V1__LinuxPodSandboxStats *l = o->linux = CRI_NEW(ctx, runtime__v1__linux_pod_sandbox_stats);

        rt_pod_stats ps;
        rt_pod_host_stats(p, &ps);
        /* the containers' own, and their sums */
        uint64_t cpu = 0, mem = 0, procs = 0;
        bool any = false;
        l->containers = cri_alloc(ctx, (n_ctrs ? n_ctrs : 1) * sizeof(void *));
        for (size_t i = 0; i < n_ctrs; i++) {
                if (strcmp(ctrs[i]->sandbox_id, p->id) != 0)
                        continue;
                rt_ctr_stats st;
                cc_error *err = NULL;
                if (rt_container_stats(rt, ctrs[i]->id, true, &st, &err) < 0) {
                        cc_error_free(err); /* removed meanwhile */
                        continue;
                }
                if (st.have_cpu_mem) {
                        any = true;
                        cpu += st.cpu_usage_ns;
                        mem += st.memory_working_set;
                        procs += st.pids;
                }
                l->containers[l->n_containers++] = cri_ctr_stats_to_cri(ctx, ctrs[i], &st);
                rt_ctr_stats_clear(&st);
        }
        if (!ps.have_cpu_mem && p->mode == RT_POD_HOST && any) {
                ps.have_cpu_mem = true;
                ps.cpu_usage_ns = cpu;
                ps.memory_bytes = mem;
        }
        if (ps.have_cpu_mem && ps.cpu_usage_ns > 0) {
                l->cpu = CRI_NEW(ctx, runtime__v1__cpu_usage);
                l->cpu->timestamp = ps.timestamp_ns;
                l->cpu->usage_core_nano_seconds = cri_u64(ctx, ps.cpu_usage_ns);
                uint64_t rate;
                if (cri_cpu_rate(p->id, ps.cpu_usage_ns, ps.timestamp_ns, &rate))
                        l->cpu->usage_nano_cores = cri_u64(ctx, rate);
        }
        if (ps.have_cpu_mem && ps.memory_bytes > 0) {
                l->memory = CRI_NEW(ctx, runtime__v1__memory_usage);
                l->memory->timestamp = ps.timestamp_ns;
                l->memory->working_set_bytes = cri_u64(ctx, ps.memory_bytes);
                l->memory->usage_bytes = cri_u64(ctx, ps.memory_bytes);
        }
        /* running containers have a process: 0 is a count the agent could
         * not read (pids of a cgroup v1 host in host mode), left out */
        if (any && procs > 0) {
                l->process = CRI_NEW(ctx, runtime__v1__process_usage);
                l->process->timestamp = ps.timestamp_ns;
                l->process->process_count = cri_u64(ctx, procs);
        }
        if (ps.n_ifs > 0) {
                Runtime__V1__NetworkUsage *n = l->network = CRI_NEW(ctx, runtime__v1__network_usage);
                n->timestamp = ps.timestamp_ns;
                /* the CNI interface (eth0) is the default, the rest are listed */
                size_t def = 0;
                for (size_t i = 0; i < ps.n_ifs; i++)
                        if (!strcmp(ps.ifs[i].name, "eth0"))
                                def = i;
                n->default_interface = iface(ctx, &ps.ifs[def]);
                n->interfaces = cri_alloc(ctx, ps.n_ifs * sizeof(void *));
                for (size_t i = 0; i < ps.n_ifs; i++)
                        if (i != def)
                                n->interfaces[n->n_interfaces++] = iface(ctx, &ps.ifs[i]);
        }
        return o;
}

int cri_rpc_pod_sandbox_stats(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                              cc_error **ret_err)
{
        const Runtime__V1__PodSandboxStatsRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "pod_sandbox_id", req->pod_sandbox_id, &rt, ret_err);
        if (r < 0)
                return r;
        _cleanup_rt_pod_info_ rt_pod_info *p = NULL;
        if ((r = rt_pod_status(rt, req->pod_sandbox_id, &p, ret_err)) < 0)
                return r;
        rt_ctr_info **ctrs = NULL;
        size_t n = 0;
        if ((r = rt_container_list(rt, &ctrs, &n, ret_err)) < 0)
                return r;
        Runtime__V1__PodSandboxStatsResponse *resp = CRI_NEW(ctx, runtime__v1__pod_sandbox_stats_response);
        resp->stats = pod_stats(ctx, rt, p, ctrs, n);
        rt_ctr_info_list_free(ctrs, n);
        *ret_resp = &resp->base;
        return 0;
}

int cri_rpc_list_pod_sandbox_stats(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                                   cc_error **ret_err)
{
        const Runtime__V1__ListPodSandboxStatsRequest *req = (const void *)in;
        const Runtime__V1__PodSandboxStatsFilter *f = req->filter;
        rt_runtime *rt = NULL;
        int r = cri_runtime(ctx, &rt, ret_err);
        if (r < 0)
                return r;
        rt_pod_info **pods = NULL;
        size_t np = 0;
        if ((r = rt_pod_list(rt, &pods, &np, ret_err)) < 0)
                return r;
        rt_ctr_info **ctrs = NULL;
        size_t nc = 0;
        if ((r = rt_container_list(rt, &ctrs, &nc, ret_err)) < 0) {
                rt_pod_info_list_free(pods, np);
                return r;
        }
        Runtime__V1__ListPodSandboxStatsResponse *resp = CRI_NEW(ctx, runtime__v1__list_pod_sandbox_stats_response);
        resp->stats = cri_alloc(ctx, (np ? np : 1) * sizeof(void *));
        for (size_t i = 0; i < np; i++) {
                const rt_pod_info *p = pods[i];
                if (p->state != RT_POD_READY)
                        continue;
                if (f && f->id && *f->id && !cri_id_has_prefix(p->id, f->id))
                        continue;
                if (f && !cri_labels_match((void *const *)f->label_selector, f->n_label_selector,
                                           p->config ? (void *const *)p->config->labels : NULL,
                                           p->config ? p->config->n_labels : 0))
                        continue;
                resp->stats[resp->n_stats++] = pod_stats(ctx, rt, p, ctrs, nc);
        }
        rt_ctr_info_list_free(ctrs, nc);
        rt_pod_info_list_free(pods, np);
        *ret_resp = &resp->base;
        return 0;
}
