/* SPDX-License-Identifier: Apache-2.0 */
/* cocoon-vmm: test driver for the VMM backend (tests/integration/test_vmm.py).
 *
 *   cocoon-vmm boot --id ID --run-dir DIR --kernel K --initrd I --state FILE
 *                   [--share DIR] [--memory MIB] [--vcpus N] [--accel auto|kvm|tcg]
 *                   [--params "..."] [--console-log] [--qemu BIN] [--virtiofsd BIN]
 *                   [--block PATH] [--block-ro] [--tap-fd FD --mac MAC]
 *                   [--ping] [--hold]
 *       starts virtiofsd (with --share) and QEMU, writes the saved state
 *       ({"vmm": ..., "virtiofsd": ...}) to FILE, prints one JSON line (pids,
 *       endpoint, timings in ms). --ping: also waits for the guest's pong
 *       (boot-to-ping time). --hold: then stays, waiting on the VMM's exit_fd,
 *       and prints {"event":"exit"} when QEMU exits.
 *   cocoon-vmm ping FILE [--timeout MS]     re-attach, ping the guest agent
 *   cocoon-vmm pause FILE | resume FILE     re-attach, QMP stop / cont
 *   cocoon-vmm watch FILE [--timeout MS]    re-attach, wait on exit_fd
 *   cocoon-vmm status FILE                  is QEMU / virtiofsd alive
 *   cocoon-vmm stop FILE [--timeout MS]     re-attach, stop QEMU and virtiofsd
 * Every command re-attaches through vmm load (as cocoond does after a
 * restart). Errors go to stderr; the exit status is 1. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "runtime/virtiofsd.h"
#include "runtime/vmm.h"

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(cc_error *err)
{
        fprintf(stderr, "cocoon-vmm: %s\n", err ? err->msg : "failed");
        cc_error_free(err);
        return 1;
}

/* Sends "ping" over the agent endpoint and waits for "pong"; ms or -errno. */
static int ping(const vmm_endpoint *ep, int timeout_ms)
{
        if (ep->kind != VMM_EP_UNIX)
                return -EOPNOTSUPP;
        int64_t deadline = now_ms() + timeout_ms;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ep->path);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        if (send(fd, "ping\n", 5, MSG_NOSIGNAL) != 5)
                return -EIO;
        char buf[64];
        size_t len = 0;
        for (;;) {
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd pf = { fd, POLLIN, 0 };
                if (poll(&pf, 1, (int)left) <= 0)
                        continue;
                ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (n <= 0)
                        return -ECONNRESET;
                len += (size_t)n;
                buf[len] = 0;
                if (strchr(buf, '\n'))
                        return strcmp(buf, "pong\n") == 0 ? 0 : -EBADMSG;
                if (len == sizeof(buf) - 1)
                        return -EBADMSG;
        }
}

static void print_endpoint(json_object *o, const vmm_endpoint *ep)
{
        json_object *e = json_object_new_object();
        if (ep->kind == VMM_EP_UNIX) {
                json_object_object_add(e, "kind", json_object_new_string("unix"));
                json_object_object_add(e, "path", json_object_new_string(ep->path));
        } else {
                json_object_object_add(e, "kind", json_object_new_string("vsock"));
                json_object_object_add(e, "cid", json_object_new_int64(ep->cid));
                json_object_object_add(e, "port", json_object_new_int64(ep->port));
        }
        json_object_object_add(o, "endpoint", e);
}

static void emit(json_object *o)
{
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        fflush(stdout);
}

static int wait_exit(vmm *v, int timeout_ms)
{
        struct pollfd pf = { vmm_get_ops(v)->exit_fd(v), POLLIN, 0 };
        int r = poll(&pf, 1, timeout_ms);
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object_object_add(o, "event", json_object_new_string(r > 0 ? "exit" : "timeout"));
        emit(o);
        return r > 0 ? 0 : 1;
}

static int cmd_boot(int argc, char **argv)
{
        static const struct option opts[] = {
                { "id", required_argument, NULL, 'i' },      { "run-dir", required_argument, NULL, 'r' },
                { "kernel", required_argument, NULL, 'k' },  { "initrd", required_argument, NULL, 'n' },
                { "state", required_argument, NULL, 's' },   { "share", required_argument, NULL, 'S' },
                { "memory", required_argument, NULL, 'm' },  { "vcpus", required_argument, NULL, 'c' },
                { "accel", required_argument, NULL, 'a' },   { "params", required_argument, NULL, 'p' },
                { "console-log", no_argument, NULL, 'l' },   { "qemu", required_argument, NULL, 'q' },
                { "virtiofsd", required_argument, NULL, 'v' }, { "ping", no_argument, NULL, 'P' },
                { "hold", no_argument, NULL, 'H' },          { "block", required_argument, NULL, 'b' },
                { "block-ro", no_argument, NULL, 'R' },      { "tap-fd", required_argument, NULL, 't' },
                { "mac", required_argument, NULL, 'M' },     { 0, 0, 0, 0 },
        };
        vmm_config c = { .machine = "microvm", .memory_mib = 256, .vcpus = 1 };
        const char *state = NULL, *share = NULL, *vfsd_bin = NULL;
        const char *block = NULL, *mac = "52:54:00:12:34:56";
        bool do_ping = false, hold = false, block_ro = false;
        int tap_fd = -1;
        int o;
        optind = 1;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (o) {
                case 'i': c.id = optarg; break;
                case 'r': c.run_dir = optarg; break;
                case 'k': c.kernel = optarg; break;
                case 'n': c.initrd = optarg; break;
                case 's': state = optarg; break;
                case 'S': share = optarg; break;
                case 'm': c.memory_mib = atoi(optarg); break;
                case 'c': c.vcpus = atoi(optarg); break;
                case 'a':
                        c.accel = strcmp(optarg, "kvm") == 0   ? VMM_ACCEL_KVM
                                  : strcmp(optarg, "tcg") == 0 ? VMM_ACCEL_TCG
                                                               : VMM_ACCEL_AUTO;
                        break;
                case 'p': c.kernel_params = optarg; break;
                case 'l': c.console_log = true; break;
                case 'q': c.binary = optarg; break;
                case 'v': vfsd_bin = optarg; break;
                case 'P': do_ping = true; break;
                case 'H': hold = true; break;
                case 'b': block = optarg; break;
                case 'R': block_ro = true; break;
                case 't': tap_fd = atoi(optarg); break;
                case 'M': mac = optarg; break;
                default: return 2;
                }
        }
        if (!c.id || !c.run_dir || !c.kernel || !c.initrd || !state) {
                fprintf(stderr, "cocoon-vmm boot: --id, --run-dir, --kernel, --initrd and --state are required\n");
                return 2;
        }
        cc_error *err = NULL;
        _cleanup_free_ char *agent_sock = NULL;
        if (asprintf(&agent_sock, "%s/agent.sock", c.run_dir) < 0)
                return 1;

        _cleanup_json_ json_object *saved = NULL, *out = NULL;
        int64_t t0 = now_ms(), t_vfsd = t0;
        virtiofsd *fsd = NULL;
        vmm *v = NULL;
        if (share) {
                virtiofsd_config fc = { .binary = vfsd_bin, .shared_dir = share, .run_dir = c.run_dir };
                if (virtiofsd_start(&fc, &fsd, &err) < 0)
                        return fail(err);
                t_vfsd = now_ms();
        }
        if (vmm_create(&vmm_qemu_ops, &c, &v, &err) < 0)
                goto fail;
        if (fsd) {
                vmm_device d = { .kind = VMM_DEV_FS,
                                 .fs = { .tag = "cocoon", .socket_path = virtiofsd_socket_path(fsd) } };
                if (vmm_add_device(v, &d, &err) < 0)
                        goto fail;
        }
        if (block) {
                vmm_device d = { .kind = VMM_DEV_BLOCK, .block = { .path = block, .readonly = block_ro } };
                if (vmm_add_device(v, &d, &err) < 0)
                        goto fail;
        }
        if (tap_fd >= 0) {
                vmm_device d = { .kind = VMM_DEV_NET, .net = { .tap_fd = tap_fd, .mtu = 1400 } };
                snprintf(d.net.mac, sizeof(d.net.mac), "%s", mac);
                if (vmm_add_device(v, &d, &err) < 0)
                        goto fail;
        }
        vmm_device sd = { .kind = VMM_DEV_SERIAL, .serial = { .name = "agent.0", .socket_path = agent_sock } };
        if (vmm_add_device(v, &sd, &err) < 0)
                goto fail;
        int64_t t_start = now_ms();
        if (vmm_start(v, &err) < 0) {
                virtiofsd_explain(fsd, &err);
                goto fail;
        }
        int64_t t_started = now_ms();

        saved = json_object_new_object();
        json_object *vs = NULL, *fs = NULL;
        if (vmm_get_ops(v)->save(v, &vs, &err) < 0)
                goto fail_stop;
        json_object_object_add(saved, "vmm", vs);
        if (fsd) {
                if (virtiofsd_save(fsd, &fs, &err) < 0)
                        goto fail_stop;
                json_object_object_add(saved, "virtiofsd", fs);
        }
        if (cc_json_write_file(state, saved, 0600, &err) < 0)
                goto fail_stop;

        vmm_endpoint ep;
        if (vmm_agent_endpoint(v, &ep, &err) < 0)
                goto fail_stop;
        out = json_object_new_object();
        json_object_object_add(out, "pid", json_object_new_int(vmm_get_ops(v)->pid(v)));
        if (fsd)
                json_object_object_add(out, "virtiofsd_pid", json_object_new_int(virtiofsd_pid(fsd)));
        print_endpoint(out, &ep);
        json_object *t = json_object_new_object();
        json_object_object_add(t, "virtiofsd_ms", json_object_new_int64(t_vfsd - t0));
        json_object_object_add(t, "start_ms", json_object_new_int64(t_started - t_start));
        if (do_ping) {
                int r = ping(&ep, 60000);
                if (r < 0) {
                        cc_error_set(&err, r, "ping after boot: %s", strerror(-r));
                        goto fail_stop;
                }
                json_object_object_add(t, "boot_to_ping_ms", json_object_new_int64(now_ms() - t0));
        }
        json_object_object_add(out, "timings", t);
        emit(out);
        int rc = hold ? wait_exit(v, -1) : 0;
        vmm_free(v);
        virtiofsd_free(fsd);
        return rc;

fail_stop:
        vmm_stop(v, 1000, NULL);
fail:
        vmm_free(v);
        if (fsd) {
                virtiofsd_stop(fsd, 1000, NULL);
                virtiofsd_free(fsd);
        }
        return fail(err);
}

static json_object *read_state(const char *file, cc_error **ret_err)
{
        return cc_json_parse_file(file, 1 << 20, ret_err);
}

/* QEMU died (load said -ESRCH): remove what it left in the run directory,
 * as cocoond does by removing the pod's run directory. */
static void forget_dead_vm(json_object *vs)
{
        json_object *socks = cc_json_get_typed(vs, "sockets", json_type_array);
        for (size_t i = 0; socks && i < json_object_array_length(socks); i++) {
                json_object *p = json_object_array_get_idx(socks, i);
                if (json_object_is_type(p, json_type_string))
                        unlink(json_object_get_string(p));
        }
        json_object *rd = cc_json_get_typed(vs, "run_dir", json_type_string);
        _cleanup_free_ char *log = NULL;
        if (rd && asprintf(&log, "%s/qemu.log", json_object_get_string(rd)) > 0)
                unlink(log);
}

static int cmd_attached(const char *cmd, const char *file, int timeout_ms)
{
        cc_error *err = NULL;
        _cleanup_json_ json_object *st = read_state(file, &err);
        if (!st)
                return fail(err);
        json_object *vs = cc_json_get_typed(st, "vmm", json_type_object);
        json_object *fs = cc_json_get_typed(st, "virtiofsd", json_type_object);
        _cleanup_json_ json_object *out = json_object_new_object();

        if (strcmp(cmd, "status") == 0 || strcmp(cmd, "stop") == 0) {
                vmm *v = NULL;
                virtiofsd *fsd = NULL;
                int r = vmm_qemu_ops.load(NULL, vs, &v, &err);
                bool gone = r == -ESRCH;
                if (r < 0 && !gone)
                        return fail(err);
                cc_error_free(err);
                err = NULL;
                if (fs && virtiofsd_load(fs, &fsd, &err) < 0) {
                        vmm_free(v);
                        return fail(err);
                }
                if (strcmp(cmd, "status") == 0) {
                        json_object_object_add(out, "alive", json_object_new_boolean(v && vmm_qemu_ops.alive(v)));
                        json_object_object_add(out, "virtiofsd_alive",
                                               json_object_new_boolean(fsd && virtiofsd_alive(fsd)));
                } else {
                        int64_t t0 = now_ms();
                        if (v && vmm_stop(v, timeout_ms, &err) < 0)
                                r = -1;
                        if (gone)
                                forget_dead_vm(vs);
                        if ((r >= 0 || gone) && fsd && virtiofsd_stop(fsd, timeout_ms, &err) < 0)
                                r = -1;
                        if (r < 0 && (!gone || err)) {
                                vmm_free(v);
                                virtiofsd_free(fsd);
                                return fail(err);
                        }
                        json_object_object_add(out, "stopped", json_object_new_boolean(true));
                        json_object_object_add(out, "was_running", json_object_new_boolean(!gone));
                        json_object_object_add(out, "stop_ms", json_object_new_int64(now_ms() - t0));
                        unlink(file);
                }
                vmm_free(v);
                virtiofsd_free(fsd);
                emit(out);
                return 0;
        }

        vmm *v = NULL;
        if (vmm_qemu_ops.load(NULL, vs, &v, &err) < 0)
                return fail(err);
        int rc = 0;
        if (strcmp(cmd, "ping") == 0) {
                vmm_endpoint ep;
                int64_t t0 = now_ms();
                if (vmm_agent_endpoint(v, &ep, &err) < 0) {
                        rc = fail(err);
                } else {
                        int r = ping(&ep, timeout_ms);
                        json_object_object_add(out, "pong", json_object_new_boolean(r == 0));
                        json_object_object_add(out, "ms", json_object_new_int64(now_ms() - t0));
                        if (r < 0)
                                json_object_object_add(out, "error", json_object_new_string(strerror(-r)));
                        emit(out);
                        rc = r == 0 ? 0 : 1;
                }
        } else if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0) {
                int r = strcmp(cmd, "pause") == 0 ? vmm_pause(v, &err) : vmm_resume(v, &err);
                if (r < 0) {
                        rc = fail(err);
                } else {
                        json_object_object_add(out, cmd, json_object_new_boolean(true));
                        emit(out);
                }
        } else if (strcmp(cmd, "watch") == 0) {
                rc = wait_exit(v, timeout_ms);
        } else {
                fprintf(stderr, "cocoon-vmm: unknown command '%s'\n", cmd);
                rc = 2;
        }
        vmm_free(v);
        return rc;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: cocoon-vmm boot|ping|pause|resume|watch|status|stop ...\n");
                return 2;
        }
        if (strcmp(argv[1], "boot") == 0)
                return cmd_boot(argc - 1, argv + 1);
        if (argc < 3) {
                fprintf(stderr, "cocoon-vmm %s: state file required\n", argv[1]);
                return 2;
        }
        int timeout = 10000;
        if (argc >= 5 && strcmp(argv[3], "--timeout") == 0)
                timeout = atoi(argv[4]);
        return cmd_attached(argv[1], argv[2], timeout);
}
