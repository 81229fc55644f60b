/* SPDX-License-Identifier: Apache-2.0 */
/* CRI → OCI: builds the OCI runtime spec of a container (as the agent
 * protocol's Grpc__Spec, see runtime/agent.h) from the CreateContainer
 * request, the pod's config and the image's config, the way containerd's CRI
 * plugin does:
 *
 *  - process: args = (command or image entrypoint) + (args or image cmd) —
 *    command given: image entrypoint and cmd are ignored; only args given:
 *    image entrypoint + args. env = image env, overridden/extended by the
 *    request (same key replaces), plus HOSTNAME; PATH default when none.
 *    cwd = working_dir or image WorkingDir or "/". tty/stdin from the request.
 *  - user: run_as_user / run_as_username / image User ("uid", "uid:gid",
 *    "name", "name:group"); run_as_group; supplemental groups. Numeric
 *    "uid:gid" → User.UID/GID only; anything else is passed whole as
 *    User.Username for the agent to resolve in the container's /etc/passwd
 *    (and /etc/group): "1000" (gid and groups from the files, as containerd),
 *    "name", "name:group", "uid:group".
 *  - capabilities: the default set (containerd's 14), plus add, minus drop,
 *    "ALL" handled; privileged: all capabilities, no seccomp, no masked/readonly
 *    paths, writable sysfs (privileged WITHIN the VM only).
 *  - no_new_privs, readonly_rootfs, masked/readonly paths (defaults as
 *    containerd when the request gives none), oom_score_adj, sysctls (pod),
 *    rlimits none (inherit).
 *  - seccomp: RuntimeDefault → the profile shipped as conf/seccomp.json
 *    (installed to <seccomp_dir>/default.json); Localhost → a profile file
 *    (absolute path, must exist, Docker/OCI JSON format); Unconfined → none.
 *    The deprecated seccomp_profile_path string ("runtime/default",
 *    "docker/default", "unconfined", "localhost/<path>") is honoured too;
 *    neither given → unconfined (containerd 1.6). Docker's "includes"/
 *    "excludes" rule conditions are evaluated against the container's
 *    capabilities and architecture; defaultErrnoRet other than 1 is refused
 *    (the agent protocol has no field for it: the agent uses EPERM).
 *  - resources: cpu shares/quota/period/cpuset, memory limit, pids? (not in
 *    CRI) hugepages ignored; oom_score_adj.
 *  - mounts: default /proc, /dev (tmpfs), /dev/pts, /dev/shm (the pod's),
 *    /dev/mqueue, /sys (ro), /sys/fs/cgroup; then the request's mounts, each
 *    mapped to where the runtime put its source (rt_spec_mount below);
 *    /etc/hosts, /etc/resolv.conf, /etc/hostname and /dev/termination-log as
 *    the request/kubelet asks.
 *  - namespaces: mount, pid, ipc, uts, cgroup (not when privileged). Pod
 *    sharing of the pid namespace is the CreateContainerRequest's
 *    sandbox_pidns (set by the caller when the pid mode is POD), not the
 *    spec. In host mode, NODE drops the entry (the host's namespace): pid,
 *    ipc, and for host network uts and the hostname too; network joins
 *    pod_netns when the pod is not host-network. In a VM, NODE means the VM
 *    and changes nothing; the network namespace is the VM's own (no entry).
 *    TARGET and user namespaces → -EOPNOTSUPP.
 *  - devices: bind mounts of the host's nodes in host mode; in a VM
 *    -EOPNOTSUPP (the host's devices are not in the guest).
 *  - annotations: io.kubernetes.cri.* (container type, sandbox id, names).
 *
 * Everything from the request is validated: unknown capability names,
 * relative or ".."-containing paths, an unknown seccomp profile type, a
 * profile that does not exist or does not parse → -EINVAL with a message
 * naming the field. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "image/manifest.h"
#include "api.pb-c.h"
#include "oci.pb-c.h"

/* Where the runtime placed a CRI mount's source, as the container sees it. */
typedef struct rt_spec_mount {
        const Runtime__V1__Mount *cri; /* the request's mount */
        const char *source;            /* path to bind from (guest path in a VM, host path in host mode) */
} rt_spec_mount;

typedef struct rt_spec_input {
        const Runtime__V1__ContainerConfig *ctr;
        const Runtime__V1__PodSandboxConfig *pod;
        const image_config *image;      /* may be NULL (no image defaults) */
        const char *sandbox_id;
        const char *container_id;
        const char *root_path;          /* rootfs as the agent sees it */
        bool readonly_rootfs_handled;   /* (reserved) */
        const rt_spec_mount *mounts;    /* one per ctr->mounts[i], same order */
        size_t n_mounts;
        bool host_mode;                 /* run by a host-mode agent on the host */
        const char *pod_netns;          /* host mode, not host network: netns path */
        const char *seccomp_dir;        /* directory of default.json */
        const char *hosts_path;         /* etc files to bind (may be NULL) */
        const char *resolv_path;
        const char *hostname_path;
        const char *shm_path;           /* the pod's /dev/shm source (may be NULL: a tmpfs) */
} rt_spec_input;

int rt_spec_build(const rt_spec_input *in, Grpc__Spec **ret, cc_error **ret_err);
void rt_spec_free(Grpc__Spec *s);
/* The OCI resources (as the agent protocol carries them) for CRI ones, checked
 * as CreateContainer checks them; *ret NULL for res NULL. Free *ret with
 * protobuf_c_message_free_unpacked. */
int rt_spec_resources(const Runtime__V1__LinuxContainerResources *res, Grpc__LinuxResources **ret,
                      cc_error **ret_err);
static inline void rt_spec_freep(Grpc__Spec **s) { rt_spec_free(*s); }
#define _cleanup_rt_spec_ __attribute__((cleanup(rt_spec_freep)))

/* The process of an exec in a container built from spec: argv, the spec's
 * env/cwd/user/capabilities/no_new_privs, tty as asked. */
int rt_spec_exec_process(const Grpc__Spec *spec, char *const *argv, size_t argc, bool tty,
                         Grpc__Process **ret, cc_error **ret_err);
void rt_spec_process_free(Grpc__Process *p);

/* Persisting a spec (the container record keeps it for execs after a
 * restart): protobuf bytes. */
int rt_spec_pack(const Grpc__Spec *s, uint8_t **ret, size_t *ret_len, cc_error **ret_err);
int rt_spec_unpack(const uint8_t *buf, size_t len, Grpc__Spec **ret, cc_error **ret_err);

/* Loads and converts a seccomp profile (Docker/OCI JSON) — exposed for tests. */
int rt_spec_seccomp_load(const char *path, Grpc__LinuxSeccomp **ret, cc_error **ret_err);
