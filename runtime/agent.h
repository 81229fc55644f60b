/* SPDX-License-Identifier: Apache-2.0 */
/* The agent client: cocoond's side of the Kata agent protocol (ttRPC), one
 * typed wrapper per RPC, plus the dialer.
 *
 * The rest of the runtime never sees ttRPC frames or envelopes. The OCI spec
 * and the process of an exec are passed as the protocol's own Grpc__Spec /
 * Grpc__Process (built by runtime/spec.c): the OCI runtime spec is itself a
 * data format, and converting it twice would only add a place for bugs.
 *
 * The guest is UNTRUSTED: every reply is bounded and checked (string lengths,
 * counts, exit codes); a guest that stalls makes calls time out, never hang.
 * Every wrapper takes a timeout in ms (<= 0: the client's default, see
 * rt_agent_set_default_timeout) except the reads/waits that are meant to block.
 *
 * Thread-safe: any number of calls may run concurrently on one rt_agent (the
 * ttRPC client multiplexes them); the client is freed by the last
 * rt_agent_unref.
 *
 * Errors: ttRPC's (see common/ttrpc.h: -ETIMEDOUT, -ECONNABORTED after
 * rt_agent_close, -ECONNRESET/-EPIPE/-EPROTO when the connection is lost),
 * the agent's status mapped to an errno (NOT_FOUND -> -ENOENT,
 * FAILED_PRECONDITION -> -EBUSY, ...; cc_error.grpc keeps the code), -EINVAL
 * for arguments refused before anything is sent, -EBADMSG for a reply that
 * fails the checks (the connection stays usable). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "runtime/vmm.h"
#include "oci.pb-c.h"

typedef struct rt_agent rt_agent;

/* Dials the agent at ep: vsock (AF_VSOCK cid:port) or the host side of the
 * guest's virtio-serial port (a unix socket the VMM listens on; one open at a
 * time), or a host-mode agent's unix socket. Retries (backoff 10 ms doubling
 * to 200 ms) until the agent answers Health.Check on this very connection or
 * timeout_ms (<= 0: 30 s) passes (-ETIMEDOUT, the last connect/check error in
 * the message). A virtio-serial connection that the guest has not yet opened
 * reads nothing: the health probe is what proves it is served, so probes of
 * 500 ms are repeated on the same connection (late answers to earlier probes
 * are discarded) and a new connection is made only when one fails. A peer
 * that answers the probe with an error status is not retried. cancel_fd (may
 * be -1) readable = give up at once (-ECANCELED), e.g. the VMM exited; it is
 * watched during probes too. */
int rt_agent_dial(const vmm_endpoint *ep, int timeout_ms, int cancel_fd, rt_agent **ret,
                  cc_error **ret_err);
/* Reference counted: the pod holds one reference, every exec/attach/port
 * forward session another, so a pod removed under a running session never
 * frees the client under it. The last unref closes the connection (calls in
 * flight fail with -ECONNABORTED and are waited for) and frees. NULL ok. */
rt_agent *rt_agent_ref(rt_agent *a);
void rt_agent_unref(rt_agent *a);
static inline void rt_agent_unrefp(rt_agent **a) { rt_agent_unref(*a); }
#define _cleanup_rt_agent_ __attribute__((cleanup(rt_agent_unrefp)))
/* Makes every pending and later call fail with -ECONNABORTED (no free). */
void rt_agent_close(rt_agent *a);
bool rt_agent_is_closed(rt_agent *a);
/* Readable (POLLIN) once the connection is closed for any reason. */
int rt_agent_closed_fd(rt_agent *a);
void rt_agent_set_default_timeout(rt_agent *a, int timeout_ms);

/* ---- health ---------------------------------------------------------------- */
int rt_agent_check(rt_agent *a, int timeout_ms, cc_error **ret_err);
/* Agent version string (malloc'd, <= 256 bytes, printable). */
int rt_agent_version(rt_agent *a, int timeout_ms, char **ret, cc_error **ret_err);

/* ---- sandbox ----------------------------------------------------------------- */
typedef struct rt_agent_storage {
        const char *driver;      /* "virtio-fs", "local", "ephemeral"... */
        const char *source;      /* virtio-fs: the mount tag */
        const char *fstype;      /* "virtiofs", "tmpfs"... */
        const char *const *options; /* NULL-terminated, may be NULL */
        const char *mount_point; /* guest path */
} rt_agent_storage;

typedef struct rt_agent_sandbox {
        const char *sandbox_id;
        const char *hostname;
        const char *const *dns;  /* resolv.conf lines ("nameserver 10.0.0.10",
                                    "search a b", "options ndots:5"), may be NULL */
        const rt_agent_storage *storages;
        size_t n_storages;
        bool sandbox_pidns;      /* containers share one pid namespace */
} rt_agent_sandbox;

int rt_agent_create_sandbox(rt_agent *a, const rt_agent_sandbox *sb, int timeout_ms,
                            cc_error **ret_err);
/* Asks the guest to stop everything and power off (the VM then exits). */
int rt_agent_destroy_sandbox(rt_agent *a, int timeout_ms, cc_error **ret_err);
/* The guest's wall clock, and new entropy for its CRNG: what a VM started
 * from a template needs first (it resumes with the template's of both). */
int rt_agent_set_time(rt_agent *a, int64_t sec, int64_t usec, int timeout_ms, cc_error **ret_err);
int rt_agent_reseed(rt_agent *a, const void *data, size_t len, int timeout_ms, cc_error **ret_err);

/* ---- containers -------------------------------------------------------------- */
/* spec is borrowed (not freed). storages: extra per-container storages (may be
 * NULL/0). sandbox_pidns: join the pod's pid namespace (CreateSandbox with
 * sandbox_pidns made one; the container's pid mode is POD). */
int rt_agent_create_container(rt_agent *a, const char *ctr_id, const Grpc__Spec *spec,
                              const rt_agent_storage *storages, size_t n_storages,
                              bool sandbox_pidns, int timeout_ms, cc_error **ret_err);
int rt_agent_start_container(rt_agent *a, const char *ctr_id, int timeout_ms, cc_error **ret_err);
/* UpdateContainer: the container's cgroup gets these resources. */
int rt_agent_update_container(rt_agent *a, const char *ctr_id, Grpc__LinuxResources *res, int timeout_ms,
                              cc_error **ret_err);
/* Kills what is left and removes it; timeout_s is the agent's grace period. */
int rt_agent_remove_container(rt_agent *a, const char *ctr_id, uint32_t timeout_s,
                              int timeout_ms, cc_error **ret_err);
int rt_agent_pause_container(rt_agent *a, const char *ctr_id, int timeout_ms, cc_error **ret_err);
int rt_agent_resume_container(rt_agent *a, const char *ctr_id, int timeout_ms, cc_error **ret_err);

/* ---- processes (exec_id NULL or "": the container's init) --------------------- */
/* process is borrowed. */
int rt_agent_exec(rt_agent *a, const char *ctr_id, const char *exec_id,
                  const Grpc__Process *process, int timeout_ms, cc_error **ret_err);
/* all: the whole container (SignalProcess with an empty exec id; with
 * SIGKILL our agent kills the container's cgroup, other signals reach its
 * init). Otherwise exec_id, or the init when exec_id is NULL/"" (sent as the
 * container id, which names the init alone). signo 1..64. */
int rt_agent_signal(rt_agent *a, const char *ctr_id, const char *exec_id, int signo,
                    bool all, int timeout_ms, cc_error **ret_err);
/* Blocks until the process exits (timeout_ms <= 0: no timeout) and gives its
 * status: the exit code 0..255, or 128+N for signal N. */
int rt_agent_wait(rt_agent *a, const char *ctr_id, const char *exec_id, int timeout_ms,
                  int *ret_status, cc_error **ret_err);

typedef enum rt_agent_stream {
        RT_AGENT_STDOUT,
        RT_AGENT_STDERR,
} rt_agent_stream;

/* One ReadStdout/ReadStderr: blocks until data (or EOF) is there (timeout_ms
 * <= 0: no timeout). Returns the number of bytes written to buf (<= len,
 * checked against what the guest claims), 0 at end of stream. */
ssize_t rt_agent_read(rt_agent *a, const char *ctr_id, const char *exec_id, rt_agent_stream s,
                      void *buf, size_t len, int timeout_ms, cc_error **ret_err);
/* Writes all of buf (in chunks of at most 1 MiB). The agent takes what its
 * pipe holds and says how much; when that is nothing, the rest is retried
 * after a short backoff (1..50 ms; the protocol has no "writable" event),
 * all within timeout_ms. */
int rt_agent_write_stdin(rt_agent *a, const char *ctr_id, const char *exec_id, const void *buf,
                         size_t len, int timeout_ms, cc_error **ret_err);
int rt_agent_close_stdin(rt_agent *a, const char *ctr_id, const char *exec_id, int timeout_ms,
                         cc_error **ret_err);
int rt_agent_tty_resize(rt_agent *a, const char *ctr_id, const char *exec_id, uint32_t rows,
                        uint32_t cols, int timeout_ms, cc_error **ret_err);

/* Blocks until a container of the sandbox is OOM-killed (timeout_ms <= 0: no
 * timeout); *ret is its id (malloc'd, validated). */
int rt_agent_get_oom_event(rt_agent *a, int timeout_ms, char **ret, cc_error **ret_err);

/* ---- network (guest side of the CNI interfaces) ------------------------------- */
typedef struct rt_agent_ip {
        int family;        /* AF_INET / AF_INET6 */
        char addr[46];
        int prefixlen;
} rt_agent_ip;

typedef struct rt_agent_iface {
        const char *name;  /* guest interface name to give the NIC, e.g. "eth0" */
        const char *mac;   /* the NIC is found by this MAC */
        unsigned mtu;
        const rt_agent_ip *ips;
        size_t n_ips;
} rt_agent_iface;

typedef struct rt_agent_route {
        int family;
        const char *dest;    /* CIDR; "" or "default" for the default route */
        const char *gateway; /* "" for on-link */
        const char *device;  /* guest interface name */
} rt_agent_route;

typedef struct rt_agent_neigh {
        const char *ip;
        const char *lladdr;
        const char *device;
} rt_agent_neigh;

int rt_agent_update_interface(rt_agent *a, const rt_agent_iface *iface, int timeout_ms,
                              cc_error **ret_err);
int rt_agent_update_routes(rt_agent *a, const rt_agent_route *routes, size_t n, int timeout_ms,
                           cc_error **ret_err);
int rt_agent_add_arp_neighbors(rt_agent *a, const rt_agent_neigh *n, size_t count, int timeout_ms,
                               cc_error **ret_err);

/* ---- stats --------------------------------------------------------------------- */
typedef struct rt_agent_stats {
        uint64_t cpu_usage_ns;       /* total CPU time */
        uint64_t memory_usage;       /* bytes */
        uint64_t memory_working_set; /* usage - inactive file */
        uint64_t pids;
} rt_agent_stats;

int rt_agent_stats_container(rt_agent *a, const char *ctr_id, int timeout_ms,
                             rt_agent_stats *ret, cc_error **ret_err);

/* ---- protocol extensions -------------------------------------------------------- */
/* A unary call of any service on the agent's connection (e.g. cocoon's
 * port-forward extension, runtime/agent-portfwd.c). The caller checks the
 * reply like every typed wrapper does. timeout_ms <= 0: no timeout.
 * resp_desc NULL: google.protobuf.Empty. */
int rt_agent_call_pb(rt_agent *a, const char *service, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, int timeout_ms, ProtobufCMessage **ret_resp,
                     cc_error **ret_err);
