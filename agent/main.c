/* SPDX-License-Identifier: Apache-2.0 */
/* cocoon-agent: the in-guest agent (PID 1), or with --host a host-side
 * instance that creates containers directly on the machine it runs on (for
 * tests). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"

static void usage(FILE *f)
{
        fprintf(f, "usage: cocoon-agent                      (guest PID 1)\n"
                   "       cocoon-agent --host --listen SOCKET --state-dir DIR\n"
                   "                    [--cgroup-root DIR] [--log-level LEVEL]\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "host", no_argument, NULL, 'H' },
                { "listen", required_argument, NULL, 'l' },
                { "state-dir", required_argument, NULL, 's' },
                { "cgroup-root", required_argument, NULL, 'c' },
                { "log-level", required_argument, NULL, 'L' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        bool host = false;
        const char *listen_path = NULL, *state_dir = "/run/cocoon-agent", *cg = "/sys/fs/cgroup";
        int c;
        cc_log_set_component("component=agent");
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'H': host = true; break;
                case 'l': listen_path = optarg; break;
                case 's': state_dir = optarg; break;
                case 'c': cg = optarg; break;
                case 'L': {
                        int l = cc_log_level_from_string(optarg);
                        if (l < 0) {
                                fprintf(stderr, "cocoon-agent: unknown log level '%s'\n", optarg);
                                return 2;
                        }
                        cc_log_set_level(l);
                        break;
                }
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        agent.guest = !host;
        if (host && !listen_path) {
                usage(stderr);
                return 2;
        }
        if (!host && getpid() != 1) {
                fprintf(stderr, "cocoon-agent: not PID 1; use --host for host mode\n");
                return 2;
        }
        if (strlen(state_dir) >= sizeof(agent.state_dir) || strlen(cg) >= sizeof(agent.cgroup_root) - 200) {
                fprintf(stderr, "cocoon-agent: path too long\n");
                return 2;
        }
        snprintf(agent.state_dir, sizeof(agent.state_dir), "%s", state_dir);
        snprintf(agent.cgroup_root, sizeof(agent.cgroup_root), "%s", cg);

        /* Before any thread: SIGCHLD goes to the reactor's signalfd, a
         * closed connection must not kill us. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        _cleanup_error_ cc_error *err = NULL;
        if (!host) {
                if (agent_init_pid1(&err) < 0)
                        log_error("init: %s", err->msg); /* keep going: the host may still reach us */
                cc_error_free(TAKE_PTR(err));
        } else {
                if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
                        log_error("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
                        return 1;
                }
                if (mkdir(agent.state_dir, 0700) < 0 && errno != EEXIST) {
                        log_error("state dir %s: %s", agent.state_dir, strerror(errno));
                        return 1;
                }
        }
        if (agent_reactor_start(&err) < 0) {
                log_error("%s", err->msg);
                return 1;
        }
        agent.server = ttrpc_server_new(&err);
        if (!agent.server || agent_rpc_register(agent.server, &err) < 0) {
                log_error("%s", err->msg);
                return 1;
        }
        int r = host ? agent_channel_serve_unix(agent.server, listen_path)
                     : agent_channel_serve_guest(agent.server);
        pthread_mutex_lock(&agent_lock);
        agent_container_kill_all();
        if (agent.sandbox_pidns_pid > 0)
                kill(agent.sandbox_pidns_pid, SIGKILL);
        pthread_mutex_unlock(&agent_lock);
        if (!host) /* PID 1 must never exit */
                agent_init_poweroff();
        log_info("exiting");
        return r < 0 ? 1 : 0;
}
