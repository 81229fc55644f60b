/* SPDX-License-Identifier: Apache-2.0 */
/* Logging to stderr, one line per event, key=value fields.
 * When stderr is connected to journald (JOURNAL_STREAM matches), lines carry a
 * "<N>" syslog priority prefix and no timestamp; otherwise an RFC 3339 time and
 * level=... field. Library modules log at debug at most. */
#pragma once

#include <stdbool.h>

typedef enum cc_log_level {
        CC_LOG_ERROR = 3,
        CC_LOG_WARN = 4,
        CC_LOG_INFO = 6,
        CC_LOG_DEBUG = 7,
} cc_log_level;

void cc_log_set_level(cc_log_level level);
cc_log_level cc_log_get_level(void);
/* "error", "warn"/"warning", "info", "debug" → level; -1 if unknown. */
int cc_log_level_from_string(const char *s);
const char *cc_log_level_to_string(cc_log_level level);
/* Set a process-wide prefix field, e.g. "component=agent". NULL clears it. */
void cc_log_set_component(const char *component);
bool cc_log_enabled(cc_log_level level);

void cc_log_msg(cc_log_level level, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#define cc_log(level, ...)                                                   \
        do {                                                                 \
                if (cc_log_enabled(level))                                   \
                        cc_log_msg(level, __FILE__, __LINE__, __VA_ARGS__);  \
        } while (0)
#define log_error(...) cc_log(CC_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) cc_log(CC_LOG_WARN, __VA_ARGS__)
#define log_info(...) cc_log(CC_LOG_INFO, __VA_ARGS__)
#define log_debug(...) cc_log(CC_LOG_DEBUG, __VA_ARGS__)
