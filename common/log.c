/* SPDX-License-Identifier: Apache-2.0 */
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static cc_log_level log_level = CC_LOG_INFO;
static char log_component[64];
static int log_journal = -1; /* -1 unknown, 0 no, 1 stderr is the journal */

static const char *const level_names[] = {
        [CC_LOG_ERROR] = "error",
        [CC_LOG_WARN] = "warn",
        [CC_LOG_INFO] = "info",
        [CC_LOG_DEBUG] = "debug",
};

void cc_log_set_level(cc_log_level level) { log_level = level; }
cc_log_level cc_log_get_level(void) { return log_level; }
bool cc_log_enabled(cc_log_level level) { return level <= log_level; }

int cc_log_level_from_string(const char *s)
{
        if (!s)
                return -1;
        if (strcmp(s, "error") == 0)
                return CC_LOG_ERROR;
        if (strcmp(s, "warn") == 0 || strcmp(s, "warning") == 0)
                return CC_LOG_WARN;
        if (strcmp(s, "info") == 0)
                return CC_LOG_INFO;
        if (strcmp(s, "debug") == 0)
                return CC_LOG_DEBUG;
        return -1;
}

const char *cc_log_level_to_string(cc_log_level level)
{
        if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]) && level_names[level])
                return level_names[level];
        return "unknown";
}

void cc_log_set_component(const char *component)
{
        if (!component)
                log_component[0] = 0;
        else
                snprintf(log_component, sizeof(log_component), "%s", component);
}

/* systemd sets JOURNAL_STREAM=<dev>:<ino> for services whose stderr is the
 * journal; then the journal adds its own timestamps and parses "<N>". */
static bool stderr_is_journal(void)
{
        if (log_journal >= 0)
                return log_journal;
        log_journal = 0;
        const char *js = getenv("JOURNAL_STREAM");
        struct stat st;
        unsigned long long dev, ino;
        if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
            (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
                log_journal = 1;
        return log_journal;
}

void cc_log_msg(cc_log_level level, const char *file, int line, const char *fmt, ...)
{
        int saved = errno;
        char msg[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* Keep one event on one line. */
        for (char *p = msg; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';

        char head[96] = "";
        if (stderr_is_journal()) {
                snprintf(head, sizeof(head), "<%d>", (int)level);
        } else {
                struct timespec ts;
                struct tm tm;
                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                size_t n = strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
                snprintf(head + n, sizeof(head) - n, ".%06ldZ ", ts.tv_nsec / 1000);
        }
        char src[64] = "";
        if (log_level >= CC_LOG_DEBUG) {
                const char *base = strrchr(file, '/');
                snprintf(src, sizeof(src), " src=%s:%d", base ? base + 1 : file, line);
        }
        /* One write per line so concurrent threads never interleave. */
        char out[4400];
        int n = snprintf(out, sizeof(out), "%slevel=%s%s%s %s%s\n", head,
                         cc_log_level_to_string(level), log_component[0] ? " " : "",
                         log_component, msg, src);
        if (n > (int)sizeof(out) - 1) {
                n = sizeof(out) - 1;
                out[n - 1] = '\n';
        }
        if (n > 0 && write(STDERR_FILENO, out, n) < 0) {
                /* nowhere left to report a failed log write */
        }
        errno = saved;
}
