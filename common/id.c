/* SPDX-License-Identifier: Apache-2.0 */
#include "common/id.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

int cc_id_new(char ret[CC_ID_LEN + 1], cc_error **ret_err)
{
        unsigned char raw[CC_ID_LEN / 2];
        size_t got = 0;
        while (got < sizeof(raw)) {
                ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return cc_error_errno(ret_err, "getrandom");
                }
                got += (size_t)n;
        }
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < sizeof(raw); i++) {
                ret[2 * i] = hex[raw[i] >> 4];
                ret[2 * i + 1] = hex[raw[i] & 15];
        }
        ret[CC_ID_LEN] = 0;
        return 0;
}

static bool all_lower_hex(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

bool cc_id_is_valid(const char *id)
{
        return id && strnlen(id, CC_ID_LEN + 1) == CC_ID_LEN && all_lower_hex(id, CC_ID_LEN);
}

bool cc_id_is_prefix(const char *s)
{
        if (!s)
                return false;
        size_t n = strnlen(s, CC_ID_LEN + 1);
        return n >= 1 && n <= CC_ID_LEN && all_lower_hex(s, n);
}

int cc_name_validate(const char *what, const char *s, size_t max_len, cc_error **ret_err)
{
        if (!s || !*s)
                return cc_error_set(ret_err, -EINVAL, "%s must not be empty", what);
        size_t n = strnlen(s, max_len + 1);
        if (n > max_len)
                return cc_error_set(ret_err, -EINVAL, "%s is longer than %zu bytes", what, max_len);
        if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return cc_error_set(ret_err, -EINVAL, "%s must not be '%s'", what, s);
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return cc_error_set(ret_err, -EINVAL,
                                            "%s '%.64s' contains invalid character 0x%02x at offset %zu",
                                            what, s, (unsigned char)c, i);
        }
        return 0;
}
