/* SPDX-License-Identifier: Apache-2.0 */
/* Filesystem helpers: mkdir -p, atomic file write (tmp + fsync + rename +
 * directory fsync), bounded reads, rm -rf that never crosses mount points. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

int cc_mkdir_p(const char *path, mode_t mode, cc_error **ret_err);
/* Writes data to path atomically: readers see the old or the new file, never a
 * partial one, and nothing but the final file remains on any failure. */
int cc_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         cc_error **ret_err);
/* Reads a whole file of at most max bytes (larger → -EFBIG). The buffer is
 * NUL-terminated (not counted in *ret_len). */
int cc_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len, cc_error **ret_err);
/* Removes path recursively; refuses to descend into other filesystems (a
 * mount point below path fails with -EBUSY). A missing path is success. */
int cc_rm_rf(const char *path, cc_error **ret_err);
/* What dir holds (dir included): bytes allocated (st_blocks * 512) and
 * inodes, on dir's filesystem only (mount points below are not entered),
 * counting at most max_entries entries. 0 or -errno (-ENOENT: no dir). */
int cc_disk_usage(const char *dir, uint64_t max_entries, uint64_t *ret_bytes, uint64_t *ret_inodes);
/* True if rel is non-empty, relative (no leading "/") and has no ".."
 * component. Empty and "." components are allowed (they stay below). */
int cc_path_is_safe_relative(const char *rel);
/* Sends len bytes of data on a unix socket with fd attached (SCM_RIGHTS),
 * retrying EINTR: the bytes sent, or -errno. Async-signal-safe. */
ssize_t cc_send_fd(int sock, const void *data, size_t len, int fd);
