/* SPDX-License-Identifier: Apache-2.0 */
/* A small reader for the subset of TOML 1.0 that cocoon's configuration uses.
 *
 * Supported: comments; bare, "basic" and 'literal' keys; dotted keys;
 * [table] headers (including [a.b."quoted"]); single-line basic strings with
 * the escapes \b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX; single-line literal
 * strings; integers (decimal with optional sign, 0x / 0o / 0b prefixes,
 * underscores between digits, 64-bit signed range); true / false; arrays
 * (multi-line, comments inside, trailing comma, nested up to a depth limit).
 *
 * Rejected with an "unsupported" error: floats (incl. inf/nan), offset/local
 * dates and times, inline tables, arrays of tables ([[x]]), multi-line strings
 * (""" and '''). NUL (\u0000) is refused in strings so every string is a C
 * string. The input must be UTF-8 (a leading BOM is skipped); newlines are LF
 * or CRLF.
 *
 * The whole document is parsed into a tree. Every error message has the form
 * "NAME:LINE:COLUMN: reason" (lines and columns start at 1, columns count
 * characters, a tab is one column); errors that concern the whole input
 * (e.g. size) are "NAME: reason". Error codes: -EINVAL (syntax, duplicate
 * keys, redefined tables, limits), -EOPNOTSUPP (unsupported TOML features),
 * -EFBIG (input larger than CC_TOML_MAX_SIZE), or the errno of a failed
 * open/read (-ENOENT for a missing file).
 *
 * Table semantics follow TOML 1.0: a key is defined once; a table is defined
 * once by a [header] (a header may define a table that so far only exists
 * because a deeper header implied it); dotted keys may only extend tables that
 * were themselves created by dotted keys; a [header] may open a sub-table of
 * a table created by dotted keys. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"

/* Limits, all enforced while parsing. */
#define CC_TOML_MAX_SIZE (1024 * 1024) /* bytes per document */
#define CC_TOML_MAX_DEPTH 16           /* nesting of arrays inside arrays */
#define CC_TOML_MAX_KEY_PARTS 16       /* components of a dotted key / header */
#define CC_TOML_MAX_TABLE_ENTRIES 4096 /* keys in one table */
#define CC_TOML_MAX_VALUES 65536       /* values (incl. tables) per document */

typedef enum cc_toml_type {
        CC_TOML_TABLE,
        CC_TOML_STRING,
        CC_TOML_INTEGER,
        CC_TOML_BOOLEAN,
        CC_TOML_ARRAY,
} cc_toml_type;

typedef struct cc_toml_value cc_toml_value;

/* One key of a table, in document order. line/column: where this key
 * component appears the first time (in a key/value line, a dotted key or a
 * [header]). */
typedef struct cc_toml_entry {
        char *key; /* one component, unquoted, UTF-8 */
        unsigned line, column;
        cc_toml_value *value;
} cc_toml_entry;

struct cc_toml_value {
        cc_toml_type type;
        /* Where the value starts; for a table, the '[' of the header that
         * defined it, or its first key component if it was never defined by
         * a header. */
        unsigned line, column;
        union {
                char *string; /* NUL-terminated UTF-8, no embedded NUL */
                int64_t integer;
                bool boolean;
                struct {
                        cc_toml_value **items;
                        size_t n;
                } array;
                struct {
                        cc_toml_entry *entries; /* document order */
                        size_t n;
                        int origin; /* private to the parser */
                } table;
        };
};

/* Parses len bytes of data (need not be NUL-terminated). name is used in
 * error messages (usually the file name). Returns the root table. */
cc_toml_value *cc_toml_parse(const char *data, size_t len, const char *name, cc_error **ret_err);
/* Reads and parses a regular file (at most CC_TOML_MAX_SIZE bytes). A missing
 * file fails with code -ENOENT. */
cc_toml_value *cc_toml_parse_file(const char *path, cc_error **ret_err);
/* Frees a tree (any value); NULL is fine. */
void cc_toml_free(cc_toml_value *v);
static inline void cc_toml_freep(cc_toml_value **v) { cc_toml_free(*v); }
#define _cleanup_toml_ __attribute__((cleanup(cc_toml_freep)))

/* Looks up one key (a single component, not dotted) in a table. NULL if
 * table is NULL or not a table, or the key is absent. */
const cc_toml_value *cc_toml_get(const cc_toml_value *table, const char *key);
/* Like cc_toml_get() with several components, e.g. {"image", "registries",
 * "docker.io"}: walks tables, NULL as soon as one is missing. */
const cc_toml_value *cc_toml_get_path(const cc_toml_value *table, const char *const *keys, size_t n);

/* "table", "string", "integer", "boolean", "array". */
const char *cc_toml_type_name(cc_toml_type type);

/* Writing TOML (used by config dumps). */
/* true if s can be written as a bare key ([A-Za-z0-9_-]+). */
bool cc_toml_is_bare_key(const char *s);
/* Writes s as a basic string with quotes and escapes. */
void cc_toml_write_string(FILE *f, const char *s);
/* Writes one key component: bare if possible, else quoted. */
void cc_toml_write_key(FILE *f, const char *key);
