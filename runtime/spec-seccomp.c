/* SPDX-License-Identifier: Apache-2.0 */
/* Seccomp profiles in the Docker/OCI JSON format (the shipped RuntimeDefault
 * conf/seccomp.json and Localhost profiles) → the agent protocol's
 * LinuxSeccomp, which the agent compiles with libseccomp. Everything is
 * checked here so that a bad profile fails CreateContainer with a message
 * naming the file and the place instead of failing in the guest:
 *
 *   { "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
 *     "architectures": ["SCMP_ARCH_X86_64", ...]  (or Docker's "archMap"),
 *     "flags": [...],
 *     "syscalls": [ { "names": [...], "action": "...", "errnoRet": N,
 *                     "args": [ { "index", "value", "valueTwo", "op" } ],
 *                     "includes"/"excludes": { "caps", "arches" } } ] } */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "runtime/spec-internal.h"
#include "runtime/spec.h"

#define PROFILE_MAX_BYTES (4u << 20)
#define PROFILE_MAX_RULES 4096 /* the agent's limit */
#define PROFILE_MAX_NAMES 1024 /* per rule */

/* What the agent's libseccomp compiler understands (agent/seccomp.c). */
static const char *const actions[] = {
        "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE",
};
static const char *const ops[] = {
        "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
        "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
};
static const char *const flags[] = {
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
};
/* OCI architecture names; those the agent compiles for are marked. */
static const struct { const char *name; bool agent; } arches[] = {
        { "SCMP_ARCH_X86", true },      { "SCMP_ARCH_X86_64", true },   { "SCMP_ARCH_X32", true },
        { "SCMP_ARCH_ARM", true },      { "SCMP_ARCH_AARCH64", true },  { "SCMP_ARCH_PPC64LE", true },
        { "SCMP_ARCH_S390X", true },    { "SCMP_ARCH_RISCV64", true },  { "SCMP_ARCH_MIPS", false },
        { "SCMP_ARCH_MIPS64", false },  { "SCMP_ARCH_MIPS64N32", false }, { "SCMP_ARCH_MIPSEL", false },
        { "SCMP_ARCH_MIPSEL64", false }, { "SCMP_ARCH_MIPSEL64N32", false }, { "SCMP_ARCH_PPC", false },
        { "SCMP_ARCH_PPC64", false },   { "SCMP_ARCH_S390", false },    { "SCMP_ARCH_PARISC", false },
        { "SCMP_ARCH_PARISC64", false }, { "SCMP_ARCH_LOONGARCH64", false }, { "SCMP_ARCH_M68K", false },
        { "SCMP_ARCH_SH", false },      { "SCMP_ARCH_SHEB", false },
};

/* The build's architecture: Docker's archMap key and Go name for
 * includes/excludes "arches". */
#if defined(__x86_64__)
#define NATIVE_SCMP "SCMP_ARCH_X86_64"
#define NATIVE_GO "amd64"
#elif defined(__aarch64__)
#define NATIVE_SCMP "SCMP_ARCH_AARCH64"
#define NATIVE_GO "arm64"
#elif defined(__i386__)
#define NATIVE_SCMP "SCMP_ARCH_X86"
#define NATIVE_GO "386"
#elif defined(__arm__)
#define NATIVE_SCMP "SCMP_ARCH_ARM"
#define NATIVE_GO "arm"
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE_SCMP "SCMP_ARCH_PPC64LE"
#define NATIVE_GO "ppc64le"
#elif defined(__s390x__)
#define NATIVE_SCMP "SCMP_ARCH_S390X"
#define NATIVE_GO "s390x"
#elif defined(__riscv) && __riscv_xlen == 64
#define NATIVE_SCMP "SCMP_ARCH_RISCV64"
#define NATIVE_GO "riscv64"
#else
#define NATIVE_SCMP ""
#define NATIVE_GO ""
#endif

static bool in_list(const char *s, const char *const *list, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(s, list[i]) == 0)
                        return true;
        return false;
}

static const char *cap_base(const char *s)
{
        return strncasecmp(s, "CAP_", 4) == 0 ? s + 4 : s;
}

bool rt_spec_caps_has(char *const *caps, size_t n_caps, const char *name)
{
        for (size_t i = 0; i < n_caps; i++)
                if (strcasecmp(cap_base(caps[i]), cap_base(name)) == 0)
                        return true;
        return false;
}

static int bad(cc_error **ret_err, const char *path, const char *fmt, const char *a)
{
        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s%s%s", path, fmt, a ? a : "",
                            a ? "'" : "");
}

static int string_array(json_object *o, const char *key, json_object **ret, const char *path,
                        cc_error **ret_err)
{
        json_object *a = NULL;
        *ret = NULL;
        if (!json_object_object_get_ex(o, key, &a) || json_object_is_type(a, json_type_null))
                return 0;
        if (!json_object_is_type(a, json_type_array))
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': '%s' is not an array", path,
                                    key);
        for (size_t i = 0; i < json_object_array_length(a); i++)
                if (!json_object_is_type(json_object_array_get_idx(a, i), json_type_string))
                        return cc_error_set(ret_err, -EINVAL,
                                            "seccomp profile '%s': '%s'[%zu] is not a string", path, key, i);
        *ret = a;
        return 0;
}

static int add_arch(Grpc__LinuxSeccomp *sc, const char *name, const char *path, cc_error **ret_err)
{
        for (size_t i = 0; i < CC_ARRAY_SIZE(arches); i++) {
                if (strcmp(name, arches[i].name) != 0)
                        continue;
                /* One the agent cannot compile for is left out: calls from
                 * that ABI then hit libseccomp's bad-arch action (kill). */
                if (!arches[i].agent || in_list(name, (const char *const *)sc->architectures,
                                                sc->n_architectures))
                        return 0;
                return rt_spec_strv_push(&sc->architectures, &sc->n_architectures, name) < 0
                               ? cc_error_set(ret_err, -ENOMEM, "out of memory") : 0;
        }
        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': unknown architecture '%.64s'", path,
                            name);
}

static int parse_arches(json_object *root, Grpc__LinuxSeccomp *sc, const char *path, cc_error **ret_err)
{
        json_object *a;
        if (string_array(root, "architectures", &a, path, ret_err) < 0)
                return -EINVAL;
        for (size_t i = 0; a && i < json_object_array_length(a); i++)
                if (add_arch(sc, json_object_get_string(json_object_array_get_idx(a, i)), path, ret_err) < 0)
                        return (*ret_err)->code;
        if (a)
                return 0;
        /* Docker's archMap: the native architecture's entry with its
         * sub-architectures. */
        json_object *map = cc_json_get_typed(root, "archMap", json_type_array);
        for (size_t i = 0; map && i < json_object_array_length(map); i++) {
                json_object *e = json_object_array_get_idx(map, i);
                const char *arch = NULL;
                if (!json_object_is_type(e, json_type_object) ||
                    cc_json_get_string(e, "architecture", false, &arch, ret_err) < 0) {
                        cc_error_free(*ret_err);
                        *ret_err = NULL;
                        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': archMap[%zu] has no architecture",
                                            path, i);
                }
                if (strcmp(arch, NATIVE_SCMP) != 0)
                        continue;
                json_object *subs;
                if (add_arch(sc, arch, path, ret_err) < 0 ||
                    string_array(e, "subArchitectures", &subs, path, ret_err) < 0)
                        return (*ret_err)->code;
                for (size_t j = 0; subs && j < json_object_array_length(subs); j++)
                        if (add_arch(sc, json_object_get_string(json_object_array_get_idx(subs, j)), path,
                                     ret_err) < 0)
                                return (*ret_err)->code;
        }
        return 0;
}

/* Docker's includes/excludes: whether the rule applies to this container. */
static int rule_applies(json_object *rule, size_t idx, char *const *caps, size_t n_caps, bool *ret,
                        const char *path, cc_error **ret_err)
{
        static const char *const keys[] = { "includes", "excludes" };
        *ret = true;
        for (int k = 0; k < 2; k++) {
                json_object *cond = NULL;
                if (!json_object_object_get_ex(rule, keys[k], &cond) || json_object_is_type(cond, json_type_null))
                        continue;
                if (!json_object_is_type(cond, json_type_object))
                        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': syscalls[%zu].%s is not an object",
                                            path, idx, keys[k]);
                json_object *c, *a;
                if (string_array(cond, "caps", &c, path, ret_err) < 0 ||
                    string_array(cond, "arches", &a, path, ret_err) < 0)
                        return cc_error_prefix(ret_err, "syscalls[%zu].%s", idx, keys[k]);
                bool any_cap = false, all_caps = true, arch = false;
                for (size_t i = 0; c && i < json_object_array_length(c); i++) {
                        bool has = rt_spec_caps_has(caps, n_caps, json_object_get_string(json_object_array_get_idx(c, i)));
                        any_cap |= has;
                        all_caps &= has;
                }
                for (size_t i = 0; a && i < json_object_array_length(a); i++)
                        arch |= strcmp(json_object_get_string(json_object_array_get_idx(a, i)), NATIVE_GO) == 0;
                if (k == 0 && ((c && !all_caps) || (a && json_object_array_length(a) && !arch)))
                        *ret = false;
                if (k == 1 && ((c && any_cap) || arch))
                        *ret = false;
        }
        return 0;
}

static int get_u64(json_object *o, const char *key, bool optional, uint64_t max, uint64_t *ret,
                   const char *where, const char *path, cc_error **ret_err)
{
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
                if (optional)
                        return 0;
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: missing '%s'", path, where, key);
        }
        if (!json_object_is_type(v, json_type_int))
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: '%s' is not an integer", path,
                                    where, key);
        /* json-c keeps integers as int64 or uint64: a negative number reads
         * as 0 through get_uint64, so look at the sign first. */
        if (json_object_get_int64(v) < 0)
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: '%s' is negative", path, where,
                                    key);
        uint64_t u = json_object_get_uint64(v);
        if (u > max)
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: '%s' %llu out of range", path,
                                    where, key, (unsigned long long)u);
        *ret = u;
        return 0;
}

static bool valid_syscall_name(const char *s)
{
        size_t n = strlen(s);
        return n > 0 && n <= 64 && s[strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_")] == 0;
}

static int parse_args(json_object *rule, Grpc__LinuxSyscall *sc, const char *where, const char *path,
                      cc_error **ret_err)
{
        json_object *args = NULL;
        if (!json_object_object_get_ex(rule, "args", &args) || json_object_is_type(args, json_type_null))
                return 0;
        if (!json_object_is_type(args, json_type_array))
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: 'args' is not an array", path,
                                    where);
        size_t n = json_object_array_length(args);
        if (n > 6)
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: more than 6 args", path, where);
        if (n && !(sc->args = calloc(n, sizeof(*sc->args))))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_object *a = json_object_array_get_idx(args, i);
                char w[96];
                snprintf(w, sizeof(w), "%s.args[%zu]", where, i);
                if (!json_object_is_type(a, json_type_object))
                        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s is not an object", path, w);
                Grpc__LinuxSeccompArg *ga = malloc(sizeof(*ga));
                if (!ga)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                grpc__linux_seccomp_arg__init(ga);
                sc->args[sc->n_args++] = ga;
                const char *op = NULL;
                if (get_u64(a, "index", false, 5, &ga->index, w, path, ret_err) < 0 ||
                    get_u64(a, "value", false, UINT64_MAX, &ga->value, w, path, ret_err) < 0 ||
                    get_u64(a, "valueTwo", true, UINT64_MAX, &ga->valuetwo, w, path, ret_err) < 0)
                        return -EINVAL;
                if (cc_json_get_string(a, "op", false, &op, ret_err) < 0)
                        return cc_error_prefix(ret_err, "seccomp profile '%s': %s", path, w);
                if (!in_list(op, ops, CC_ARRAY_SIZE(ops)))
                        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: unknown operator '%.64s'",
                                            path, w, op);
                if (!(ga->op = strdup(op)))
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int check_action(const char *action, const char *where, const char *path, cc_error **ret_err)
{
        if (in_list(action, actions, CC_ARRAY_SIZE(actions)))
                return 0;
        if (strcmp(action, "SCMP_ACT_NOTIFY") == 0)
                return cc_error_set(ret_err, -EINVAL,
                                    "seccomp profile '%s': %s: action SCMP_ACT_NOTIFY is not supported", path, where);
        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: unknown action '%.64s'", path, where,
                            action);
}

static int parse_rule(json_object *rule, size_t idx, Grpc__LinuxSyscall *sc, const char *path,
                      cc_error **ret_err)
{
        char where[32];
        snprintf(where, sizeof(where), "syscalls[%zu]", idx);
        const char *action = NULL;
        if (cc_json_get_string(rule, "action", false, &action, ret_err) < 0)
                return cc_error_prefix(ret_err, "seccomp profile '%s': %s", path, where);
        if (check_action(action, where, path, ret_err) < 0)
                return -EINVAL;
        if (!(sc->action = strdup(action)))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");

        json_object *names;
        if (string_array(rule, "names", &names, path, ret_err) < 0)
                return -EINVAL;
        const char *single = NULL; /* Docker's older "name" */
        if (!names && cc_json_get_string(rule, "name", true, &single, ret_err) < 0)
                return cc_error_prefix(ret_err, "seccomp profile '%s': %s", path, where);
        size_t n = names ? json_object_array_length(names) : single ? 1 : 0;
        if (n == 0)
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: no syscall names", path, where);
        if (n > PROFILE_MAX_NAMES)
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: too many names", path, where);
        for (size_t i = 0; i < n; i++) {
                const char *s = names ? json_object_get_string(json_object_array_get_idx(names, i)) : single;
                if (!valid_syscall_name(s))
                        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s: bad syscall name '%.64s'",
                                            path, where, s);
                if (rt_spec_strv_push(&sc->names, &sc->n_names, s) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        uint64_t eno = 0;
        json_object *e = NULL;
        if (json_object_object_get_ex(rule, "errnoRet", &e) && !json_object_is_type(e, json_type_null)) {
                if (get_u64(rule, "errnoRet", false, 4095, &eno, where, path, ret_err) < 0)
                        return -EINVAL;
                sc->errno_ret_case = GRPC__LINUX_SYSCALL__ERRNO_RET_ERRNORET;
                sc->errnoret = (uint32_t)eno;
        }
        return parse_args(rule, sc, where, path, ret_err);
}

static int convert(json_object *root, const char *path, char *const *caps, size_t n_caps,
                   Grpc__LinuxSeccomp *sc, cc_error **ret_err)
{
        if (!json_object_is_type(root, json_type_object))
                return bad(ret_err, path, "not a JSON object", NULL);
        const char *def = NULL;
        if (cc_json_get_string(root, "defaultAction", false, &def, ret_err) < 0)
                return cc_error_prefix(ret_err, "seccomp profile '%s'", path);
        if (check_action(def, "defaultAction", path, ret_err) < 0)
                return -EINVAL;
        if (!(sc->defaultaction = strdup(def)))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        uint64_t def_errno = 1;
        if (get_u64(root, "defaultErrnoRet", true, 4095, &def_errno, "defaultErrnoRet", path, ret_err) < 0)
                return -EINVAL;
        /* The agent protocol carries no default errno: the agent uses EPERM. */
        if (def_errno != 1)
                return cc_error_set(ret_err, -EINVAL,
                                    "seccomp profile '%s': defaultErrnoRet %llu is not supported (only 1, EPERM)",
                                    path, (unsigned long long)def_errno);
        const char *listener = NULL;
        if (cc_json_get_string(root, "listenerPath", true, &listener, ret_err) < 0)
                return cc_error_prefix(ret_err, "seccomp profile '%s'", path);
        if (listener && *listener)
                return bad(ret_err, path, "listenerPath (seccomp notify) is not supported", NULL);
        if (parse_arches(root, sc, path, ret_err) < 0)
                return -EINVAL;

        json_object *fl;
        if (string_array(root, "flags", &fl, path, ret_err) < 0)
                return -EINVAL;
        for (size_t i = 0; fl && i < json_object_array_length(fl); i++) {
                const char *f = json_object_get_string(json_object_array_get_idx(fl, i));
                if (!in_list(f, flags, CC_ARRAY_SIZE(flags)))
                        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': unknown flag '%.64s'", path, f);
                if (rt_spec_strv_push(&sc->flags, &sc->n_flags, f) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }

        json_object *rules = NULL;
        if (!json_object_object_get_ex(root, "syscalls", &rules) || json_object_is_type(rules, json_type_null))
                return 0;
        if (!json_object_is_type(rules, json_type_array))
                return bad(ret_err, path, "'syscalls' is not an array", NULL);
        size_t n = json_object_array_length(rules);
        if (n > PROFILE_MAX_RULES)
                return bad(ret_err, path, "too many syscall rules", NULL);
        if (n && !(sc->syscalls = calloc(n, sizeof(*sc->syscalls))))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_object *rule = json_object_array_get_idx(rules, i);
                if (!json_object_is_type(rule, json_type_object))
                        return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': syscalls[%zu] is not an object",
                                            path, i);
                bool applies;
                if (rule_applies(rule, i, caps, n_caps, &applies, path, ret_err) < 0)
                        return -EINVAL;
                Grpc__LinuxSyscall *s = malloc(sizeof(*s));
                if (!s)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                grpc__linux_syscall__init(s);
                sc->syscalls[sc->n_syscalls++] = s;
                /* parsed (and so checked) even when it does not apply */
                if (parse_rule(rule, i, s, path, ret_err) < 0)
                        return -EINVAL;
                if (!applies)
                        protobuf_c_message_free_unpacked(&sc->syscalls[--sc->n_syscalls]->base, NULL);
        }
        return 0;
}

int rt_spec_seccomp_convert(const char *path, char *const *caps, size_t n_caps,
                            Grpc__LinuxSeccomp **ret, cc_error **ret_err)
{
        if (!path || path[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "seccomp profile '%s' is not an absolute path",
                                    path ? path : "");
        cc_error *err = NULL;
        _cleanup_json_ json_object *root = cc_json_parse_file(path, PROFILE_MAX_BYTES, &err);
        if (!root) {
                cc_error_set(ret_err, -EINVAL, "seccomp profile '%s': %s", path, err->msg);
                cc_error_free(err);
                return -EINVAL;
        }
        Grpc__LinuxSeccomp *sc = malloc(sizeof(*sc));
        if (!sc)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        grpc__linux_seccomp__init(sc);
        int r = convert(root, path, caps, n_caps, sc, ret_err);
        if (r < 0 && r != -ENOMEM) /* a missing field included: the profile is invalid */
                r = (*ret_err)->code = -EINVAL;
        if (r < 0) {
                protobuf_c_message_free_unpacked(&sc->base, NULL);
                return r;
        }
        *ret = sc;
        return 0;
}

int rt_spec_seccomp_load(const char *path, Grpc__LinuxSeccomp **ret, cc_error **ret_err)
{
        return rt_spec_seccomp_convert(path, NULL, 0, ret, ret_err);
}
