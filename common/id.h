/* SPDX-License-Identifier: Apache-2.0 */
/* Identifiers: pod/container ids are 64 lowercase hex characters (256 random
 * bits), like containerd's and CRI-O's, so crictl's prefix matching works. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

#define CC_ID_LEN 64

/* Writes a fresh random id (CC_ID_LEN hex chars + NUL) into ret. */
int cc_id_new(char ret[CC_ID_LEN + 1], cc_error **ret_err);
/* Exactly CC_ID_LEN lowercase hex characters. */
bool cc_id_is_valid(const char *id);
/* A non-empty prefix (1..CC_ID_LEN) of lowercase hex characters. */
bool cc_id_is_prefix(const char *s);
/* A name from CRI metadata (pod/container name, namespace, uid, attempt-free):
 * 1..max_len bytes of [A-Za-z0-9._-], not "." or "..". Sets a message that
 * names `what` when invalid. */
int cc_name_validate(const char *what, const char *s, size_t max_len, cc_error **ret_err);
