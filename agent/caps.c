/* SPDX-License-Identifier: Apache-2.0 */
/* Capabilities by name -> bit masks (in the agent), and applying the five
 * sets in the child with prctl(2)/capset(2): no libcap. */
#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/caps.h"
#include "common/cleanup.h"


int agent_caps_parse(char **names, size_t n, uint64_t *ret_mask, cc_error **ret_err)
{
        uint64_t mask = 0;
        if (n > 256)
                return cc_error_set(ret_err, -EINVAL, "too many capabilities (%zu)", n);
        for (size_t i = 0; i < n; i++) {
                int j = cc_cap_lookup(names[i]);
                if (j < 0)
                        return cc_error_set(ret_err, -EINVAL, "unknown capability '%.64s'", names[i]);
                mask |= UINT64_C(1) << j;
        }
        *ret_mask = mask;
        return 0;
}

/* Highest capability the running kernel knows (bounding set loop bound). */
static int cap_last_cap(void)
{
        for (int c = 63; c >= 0; c--)
                if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0)
                        return c;
        return CAP_LAST_CAP;
}

/* Drops what is not in the bounding set. Needs CAP_SETPCAP in the effective
 * set, which a switch away from uid 0 clears: called before it. */
int agent_caps_bound(uint64_t bounding)
{
        int last = cap_last_cap();
        for (int c = 0; c <= last; c++)
                if (!(bounding & (UINT64_C(1) << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
                        return -errno;
        return 0;
}

/* caps: bounding (see agent_caps_bound), effective, permitted, inheritable,
 * ambient. Called in the child after the uid switch (with PR_SET_KEEPCAPS
 * set, so the permitted set survived it). Async-signal-safe. */
int agent_caps_apply(const uint64_t caps[5])
{
        int last = cap_last_cap();
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof(data));
        for (int i = 0; i < 2; i++) {
                data[i].effective = (uint32_t)(caps[1] >> (32 * i));
                data[i].permitted = (uint32_t)(caps[2] >> (32 * i));
                data[i].inheritable = (uint32_t)(caps[3] >> (32 * i));
        }
        if (syscall(SYS_capset, &hdr, data) < 0)
                return -errno;

        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        for (int c = 0; c <= last && c < 64; c++)
                if ((caps[4] & (UINT64_C(1) << c)) &&
                    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
                        /* ambient needs the cap permitted and inheritable:
                         * runc ignores failures the same way */
                        continue;
        return 0;
}
