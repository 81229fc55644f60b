/* SPDX-License-Identifier: Apache-2.0 */
/* OCI seccomp profile -> classic BPF, compiled in the agent with libseccomp
 * and exported to memory, so the child only loads a ready program and a bad
 * profile fails the RPC with INVALID_ARGUMENT. */
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"

#define SECCOMP_MAX_RULES 4096
#define SECCOMP_MAX_BPF (1u << 20)

static void ctx_releasep(scmp_filter_ctx *c)
{
        if (*c)
                seccomp_release(*c);
}

static int parse_action(const char *s, bool has_errno, uint32_t errno_ret, uint32_t *ret,
                        cc_error **ret_err)
{
        uint32_t eno = has_errno ? errno_ret : EPERM;
        if (eno > 4095)
                return cc_error_set(ret_err, -EINVAL, "seccomp errno %u out of range", eno);
        if (strcmp(s, "SCMP_ACT_ALLOW") == 0)
                *ret = SCMP_ACT_ALLOW;
        else if (strcmp(s, "SCMP_ACT_ERRNO") == 0)
                *ret = SCMP_ACT_ERRNO(eno);
        else if (strcmp(s, "SCMP_ACT_KILL") == 0 || strcmp(s, "SCMP_ACT_KILL_THREAD") == 0)
                *ret = SCMP_ACT_KILL;
        else if (strcmp(s, "SCMP_ACT_KILL_PROCESS") == 0)
                *ret = SCMP_ACT_KILL_PROCESS;
        else if (strcmp(s, "SCMP_ACT_TRAP") == 0)
                *ret = SCMP_ACT_TRAP;
        else if (strcmp(s, "SCMP_ACT_LOG") == 0)
                *ret = SCMP_ACT_LOG;
        else if (strcmp(s, "SCMP_ACT_TRACE") == 0)
                *ret = SCMP_ACT_TRACE(eno);
        else
                return cc_error_set(ret_err, -EINVAL, "unknown seccomp action '%.64s'", s);
        return 0;
}

static int parse_op(const char *s, enum scmp_compare *ret, cc_error **ret_err)
{
        static const struct { const char *name; enum scmp_compare op; } ops[] = {
                { "SCMP_CMP_NE", SCMP_CMP_NE }, { "SCMP_CMP_LT", SCMP_CMP_LT },
                { "SCMP_CMP_LE", SCMP_CMP_LE }, { "SCMP_CMP_EQ", SCMP_CMP_EQ },
                { "SCMP_CMP_GE", SCMP_CMP_GE }, { "SCMP_CMP_GT", SCMP_CMP_GT },
                { "SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(ops); i++)
                if (strcmp(s, ops[i].name) == 0) {
                        *ret = ops[i].op;
                        return 0;
                }
        return cc_error_set(ret_err, -EINVAL, "unknown seccomp operator '%.64s'", s);
}

static int parse_arch(const char *s, uint32_t *ret)
{
        static const struct { const char *name; uint32_t arch; } arches[] = {
                { "SCMP_ARCH_X86", SCMP_ARCH_X86 }, { "SCMP_ARCH_X86_64", SCMP_ARCH_X86_64 },
                { "SCMP_ARCH_X32", SCMP_ARCH_X32 }, { "SCMP_ARCH_ARM", SCMP_ARCH_ARM },
                { "SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64 }, { "SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE },
                { "SCMP_ARCH_S390X", SCMP_ARCH_S390X }, { "SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64 },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(arches); i++)
                if (strcmp(s, arches[i].name) == 0) {
                        *ret = arches[i].arch;
                        return 0;
                }
        return -EINVAL;
}

int agent_seccomp_compile(const Grpc__LinuxSeccomp *s, struct sock_fprog *ret, cc_error **ret_err)
{
        uint32_t def;
        int r;
        if (!s->defaultaction || !*s->defaultaction)
                return cc_error_set(ret_err, -EINVAL, "seccomp: empty default action");
        if ((r = parse_action(s->defaultaction, false, 0, &def, ret_err)) < 0)
                return cc_error_prefix(ret_err, "seccomp default action");
        if (s->n_syscalls > SECCOMP_MAX_RULES)
                return cc_error_set(ret_err, -EINVAL, "seccomp: too many rules (%zu)", s->n_syscalls);

        _cleanup_(ctx_releasep) scmp_filter_ctx ctx = seccomp_init(def);
        if (!ctx)
                return cc_error_set(ret_err, -EINVAL, "seccomp: cannot create filter");
        for (size_t i = 0; i < s->n_architectures && i < 16; i++) {
                uint32_t arch;
                if (parse_arch(s->architectures[i], &arch) < 0)
                        return cc_error_set(ret_err, -EINVAL, "seccomp: unknown architecture '%.64s'",
                                            s->architectures[i]);
                r = seccomp_arch_add(ctx, arch);
                if (r < 0 && r != -EEXIST)
                        return cc_error_set(ret_err, -EINVAL, "seccomp: architecture '%.64s': %s",
                                            s->architectures[i], strerror(-r));
        }
        for (size_t i = 0; i < s->n_flags && i < 16; i++) {
                if (strcmp(s->flags[i], "SECCOMP_FILTER_FLAG_LOG") == 0)
                        seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
                else if (strcmp(s->flags[i], "SECCOMP_FILTER_FLAG_SPEC_ALLOW") == 0)
                        seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1);
                else if (strcmp(s->flags[i], "SECCOMP_FILTER_FLAG_TSYNC") != 0)
                        return cc_error_set(ret_err, -EINVAL, "seccomp: unknown flag '%.64s'", s->flags[i]);
        }
        /* The agent applies no_new_privs itself when the spec asks. */
        seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);

        for (size_t i = 0; i < s->n_syscalls; i++) {
                const Grpc__LinuxSyscall *sc = s->syscalls[i];
                uint32_t act;
                if (!sc->action || parse_action(sc->action,
                                                sc->errno_ret_case == GRPC__LINUX_SYSCALL__ERRNO_RET_ERRNORET,
                                                sc->errnoret, &act, ret_err) < 0) {
                        if (!sc->action)
                                cc_error_set(ret_err, -EINVAL, "seccomp rule %zu: no action", i);
                        return cc_error_prefix(ret_err, "seccomp rule %zu", i);
                }
                if (sc->n_args > 6)
                        return cc_error_set(ret_err, -EINVAL, "seccomp rule %zu: more than 6 args", i);
                struct scmp_arg_cmp cmps[6];
                for (size_t a = 0; a < sc->n_args; a++) {
                        enum scmp_compare op = SCMP_CMP_EQ;
                        if (sc->args[a]->index > 5)
                                return cc_error_set(ret_err, -EINVAL, "seccomp rule %zu: arg index %llu",
                                                    i, (unsigned long long)sc->args[a]->index);
                        if (parse_op(sc->args[a]->op ? sc->args[a]->op : "", &op, ret_err) < 0)
                                return cc_error_prefix(ret_err, "seccomp rule %zu", i);
                        cmps[a] = (struct scmp_arg_cmp){ .arg = (unsigned)sc->args[a]->index, .op = op,
                                                         .datum_a = sc->args[a]->value,
                                                         .datum_b = sc->args[a]->valuetwo };
                }
                if (act == def)
                        continue; /* libseccomp refuses rules equal to the default */
                for (size_t n = 0; n < sc->n_names; n++) {
                        int nr = seccomp_syscall_resolve_name(sc->names[n]);
                        if (nr == __NR_SCMP_ERROR)
                                continue; /* unknown on this arch/kernel: as runc */
                        r = seccomp_rule_add_array(ctx, act, nr, (unsigned)sc->n_args, cmps);
                        if (r < 0)
                                return cc_error_set(ret_err, -EINVAL, "seccomp: rule for '%.64s': %s",
                                                    sc->names[n], strerror(-r));
                }
        }

        _cleanup_close_ int mfd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
        if (mfd < 0)
                return cc_error_errno(ret_err, "seccomp: memfd_create");
        if ((r = seccomp_export_bpf(ctx, mfd)) < 0)
                return cc_error_set(ret_err, -EINVAL, "seccomp: export: %s", strerror(-r));
        struct stat st;
        if (fstat(mfd, &st) < 0)
                return cc_error_errno(ret_err, "seccomp: fstat");
        if (st.st_size <= 0 || (size_t)st.st_size > SECCOMP_MAX_BPF ||
            st.st_size % sizeof(struct sock_filter) != 0 ||
            st.st_size / sizeof(struct sock_filter) > 0xffff)
                return cc_error_set(ret_err, -E2BIG, "seccomp: program of %lld bytes",
                                    (long long)st.st_size);
        struct sock_filter *prog = malloc(st.st_size);
        if (!prog)
                return cc_error_set(ret_err, -ENOMEM, "seccomp: out of memory");
        if (pread(mfd, prog, st.st_size, 0) != st.st_size) {
                free(prog);
                return cc_error_errno(ret_err, "seccomp: read program");
        }
        ret->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
        ret->filter = prog;
        return 0;
}
