/* SPDX-License-Identifier: Apache-2.0 */
/* cocoond: serves the kubelet's CRI (runtime.v1, and v1alpha2 for older
 * kubelets) on a unix socket. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/config.h"
#include "common/log.h"
#include "cri-server/daemon.h"
#include "cri-server/dispatch.h"
#include "cri-server/grpc-server.h"
#include "cri-server/socket.h"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: cocoond [OPTIONS]\n"
                "Serve the Kubernetes CRI (runtime.v1) with one lightweight VM per pod.\n\n"
                "  -c, --config FILE     configuration file (default %s, plus drop-ins in\n"
                "                        %s/*.toml); with --config, drop-ins come from\n"
                "                        FILE's directory's cocoon.d/\n"
                "  -l, --listen ADDR     override server.listen (unix:///path)\n"
                "      --log-level LVL   error, warn, info or debug (overrides log.level)\n"
                "      --print-config    print the effective configuration and exit\n"
                "  -V, --version         print the version and exit\n"
                "  -h, --help            show this help\n",
                CC_CONFIG_DEFAULT_FILE, CC_CONFIG_DEFAULT_DROPIN_DIR);
}

/* Tell systemd (Type=notify) that the socket is being served. */
static void sd_notify_ready(void)
{
        const char *ns = getenv("NOTIFY_SOCKET");
        if (!ns || (ns[0] != '/' && ns[0] != '@'))
                return;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(ns);
        if (n >= sizeof(sa.sun_path))
                return;
        memcpy(sa.sun_path, ns, n);
        if (sa.sun_path[0] == '@')
                sa.sun_path[0] = 0;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return;
        static const char msg[] = "READY=1";
        (void)sendto(fd, msg, sizeof(msg) - 1, 0, (struct sockaddr *)&sa,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
}

int main(int argc, char **argv)
{
        enum { OPT_PRINT_CONFIG = 256, OPT_LOG_LEVEL };
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "listen", required_argument, NULL, 'l' },
                { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
                { "print-config", no_argument, NULL, OPT_PRINT_CONFIG },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *config_file = NULL, *listen = NULL, *log_level = NULL;
        bool print_config = false;
        int c;
        while ((c = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        config_file = optarg;
                        break;
                case 'l':
                        listen = optarg;
                        break;
                case OPT_LOG_LEVEL:
                        log_level = optarg;
                        break;
                case OPT_PRINT_CONFIG:
                        print_config = true;
                        break;
                case 'V':
                        printf("cocoond %s\n", PACKAGE_VERSION);
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "cocoond: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }
        int lvl = -1;
        if (log_level && (lvl = cc_log_level_from_string(log_level)) < 0) {
                fprintf(stderr, "cocoond: unknown log level '%s'\n", log_level);
                return 2;
        }

        _cleanup_error_ cc_error *err = NULL;
        _cleanup_config_ cc_config *cfg = NULL;
        _cleanup_free_ char *dropins = NULL;
        if (config_file) {
                _cleanup_free_ char *copy = strdup(config_file);
                if (!copy || asprintf(&dropins, "%s/cocoon.d", dirname(copy)) < 0)
                        return 1;
        }
        if (cc_config_load(&cfg, config_file ? config_file : CC_CONFIG_DEFAULT_FILE,
                           config_file ? dropins : CC_CONFIG_DEFAULT_DROPIN_DIR, config_file != NULL,
                           &err) < 0) {
                fprintf(stderr, "cocoond: %s\n", err->msg);
                return 1;
        }
        if (listen) {
                char *l = strdup(listen);
                if (!l)
                        return 1;
                free(cfg->server.listen);
                cfg->server.listen = l;
        }
        if (lvl >= 0)
                cfg->log.level = (cc_log_level)lvl;
        if (print_config) {
                _cleanup_free_ char *dump = cc_config_dump(cfg);
                fputs(dump, stdout);
                return 0;
        }
        cc_log_set_level(cfg->log.level);

        /* Signals are taken synchronously by the main thread; every thread
         * created from here on inherits the blocked mask. */
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        signal(SIGPIPE, SIG_IGN);

        cocoon_daemon daemon;
        if (cocoon_daemon_init(&daemon, cfg, &err) < 0) {
                log_error("startup failed: %s", err->msg);
                return 1;
        }
        daemon.config_source = config_file ? config_file : CC_CONFIG_DEFAULT_FILE;

        cri_socket sock = { NULL, -1 };
        if (cri_socket_prepare(cfg->server.listen, &sock, &err) < 0) {
                log_error("cannot serve: %s", err->msg);
                cocoon_daemon_fini(&daemon);
                return 1;
        }
        cri_grpc_init();
        cri_grpc_server *srv = NULL;
        cri_grpc_server_opts so = {
                .address = cfg->server.listen,
                .workers = (int)cfg->server.workers,
                .max_recv_message_size = (int)cfg->server.max_recv_message_size,
                .max_send_message_size = (int)cfg->server.max_send_message_size,
                .dispatch = cri_dispatch,
                .is_inline = cri_dispatch_is_inline,
                .is_streaming = cri_dispatch_is_streaming,
                .userdata = &daemon,
        };
        int rc = 1;
        if (cri_grpc_server_start(&so, &srv, &err) < 0) {
                log_error("cannot serve: %s", err->msg);
                goto out;
        }
        if (cri_socket_set_perms(&sock, cfg->server.socket_mode_bits, cfg->server.socket_group, &err) < 0) {
                log_error("cannot serve: %s", err->msg);
                cri_grpc_server_shutdown(srv, 0);
                goto out;
        }
        log_info("cocoond %s serving CRI on %s (v1%s) workers=%lld", PACKAGE_VERSION,
                 cfg->server.listen, cfg->server.enable_v1alpha2 ? ", v1alpha2" : "",
                 (long long)cfg->server.workers);
        sd_notify_ready();

        for (;;) {
                siginfo_t si;
                int sig = sigwaitinfo(&sigs, &si);
                if (sig < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (sig == SIGHUP) {
                        log_info("SIGHUP ignored: restart cocoond to apply configuration changes");
                        continue;
                }
                log_info("received %s; shutting down (in-flight calls: %d, grace %llds)",
                         strsignal(sig), cri_grpc_server_inflight(srv),
                         (long long)cfg->server.shutdown_timeout);
                break;
        }
        cri_grpc_server_shutdown(srv, (int)(cfg->server.shutdown_timeout * 1000));
        rc = 0;
out:
        cri_grpc_server_free(srv);
        cri_socket_release(&sock);
        cri_grpc_shutdown();
        cocoon_daemon_fini(&daemon);
        if (rc == 0)
                log_info("cocoond stopped");
        return rc;
}
