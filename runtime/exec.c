/* SPDX-License-Identifier: Apache-2.0 */
/* ExecSync over the agent: placeholder until the implementation lands. */
#include <errno.h>

#include "runtime/container.h"

int rt_exec_sync(rt_runtime *rt, const char *container_id, char *const *argv, size_t argc,
                 int64_t timeout_s, uint8_t **ret_stdout, size_t *ret_stdout_len,
                 uint8_t **ret_stderr, size_t *ret_stderr_len, int *ret_exit_code,
                 cc_error **ret_err) {
        (void) rt; (void) container_id; (void) argv; (void) argc; (void) timeout_s;
        (void) ret_stdout; (void) ret_stdout_len; (void) ret_stderr; (void) ret_stderr_len;
        (void) ret_exit_code;
        return cc_error_set(ret_err, -ENOSYS, "exec: not implemented yet");
}
