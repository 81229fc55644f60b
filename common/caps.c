/* SPDX-License-Identifier: Apache-2.0 */
#include <strings.h>

#include "common/caps.h"

const char *const cc_cap_names[CC_N_CAPS] = {
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
        "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
        "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
        "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
        "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
};

int cc_cap_lookup(const char *name)
{
        if (!name)
                return -1;
        if (strncasecmp(name, "CAP_", 4) == 0)
                name += 4;
        for (int j = 0; j < CC_N_CAPS; j++)
                if (strcasecmp(name, cc_cap_names[j]) == 0)
                        return j;
        return -1;
}
