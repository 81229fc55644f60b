/* SPDX-License-Identifier: Apache-2.0 */
/* Recursive-descent reader for cocoon's TOML subset; see toml.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, open_memstream */
#endif
#include "common/toml.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

enum {
        ORIGIN_ROOT,
        ORIGIN_IMPLICIT, /* created as the parent of a [header] */
        ORIGIN_HEADER,   /* defined by its own [header] */
        ORIGIN_DOTTED,   /* created by a dotted key */
};

typedef struct parser {
        const char *p, *end;
        unsigned line, col;
        const char *name;
        cc_error **ret_err;
        size_t n_values;
        cc_toml_value *root, *cur;
        char *cur_path; /* display form of the current [header]; NULL at the root */
} parser;

/* One component of a key while parsing. */
typedef struct key_part {
        char *s;
        unsigned line, col;
} key_part;

static void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n ? n : 1);
        if (!p)
                abort();
        return p;
}

static void *xcalloc(size_t n, size_t sz)
{
        void *p = calloc(n ? n : 1, sz ? sz : 1);
        if (!p)
                abort();
        return p;
}

/* ---- errors ---------------------------------------------------------- */

static int __attribute__((format(printf, 5, 6)))
perr_at(parser *ps, int code, unsigned line, unsigned col, const char *fmt, ...)
{
        _cleanup_free_ char *reason = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&reason, fmt, ap) < 0)
                reason = NULL;
        va_end(ap);
        return cc_error_set(ps->ret_err, code, "%s:%u:%u: %s", ps->name, line, col,
                            reason ? reason : "error");
}

#define perr(ps, ...) perr_at((ps), -EINVAL, (ps)->line, (ps)->col, __VA_ARGS__)
#define punsup(ps, ...) perr_at((ps), -EOPNOTSUPP, (ps)->line, (ps)->col, __VA_ARGS__)

/* ---- values ---------------------------------------------------------- */

static cc_toml_value *value_new(parser *ps, cc_toml_type type, unsigned line, unsigned col)
{
        if (ps->n_values >= CC_TOML_MAX_VALUES) {
                perr_at(ps, -EINVAL, line, col, "too many values (limit %d)", CC_TOML_MAX_VALUES);
                return NULL;
        }
        ps->n_values++;
        cc_toml_value *v = xcalloc(1, sizeof(*v));
        v->type = type;
        v->line = line;
        v->column = col;
        return v;
}

void cc_toml_free(cc_toml_value *v)
{
        if (!v)
                return;
        switch (v->type) {
        case CC_TOML_STRING:
                free(v->string);
                break;
        case CC_TOML_ARRAY:
                for (size_t i = 0; i < v->array.n; i++)
                        cc_toml_free(v->array.items[i]);
                free(v->array.items);
                break;
        case CC_TOML_TABLE:
                for (size_t i = 0; i < v->table.n; i++) {
                        free(v->table.entries[i].key);
                        cc_toml_free(v->table.entries[i].value);
                }
                free(v->table.entries);
                break;
        default:
                break;
        }
        free(v);
}

const char *cc_toml_type_name(cc_toml_type type)
{
        switch (type) {
        case CC_TOML_TABLE: return "table";
        case CC_TOML_STRING: return "string";
        case CC_TOML_INTEGER: return "integer";
        case CC_TOML_BOOLEAN: return "boolean";
        case CC_TOML_ARRAY: return "array";
        }
        return "unknown";
}

static cc_toml_entry *table_find(const cc_toml_value *t, const char *key)
{
        for (size_t i = 0; i < t->table.n; i++)
                if (strcmp(t->table.entries[i].key, key) == 0)
                        return &t->table.entries[i];
        return NULL;
}

const cc_toml_value *cc_toml_get(const cc_toml_value *table, const char *key)
{
        if (!table || table->type != CC_TOML_TABLE || !key)
                return NULL;
        cc_toml_entry *e = table_find(table, key);
        return e ? e->value : NULL;
}

const cc_toml_value *cc_toml_get_path(const cc_toml_value *table, const char *const *keys, size_t n)
{
        const cc_toml_value *v = table;
        for (size_t i = 0; i < n && v; i++)
                v = cc_toml_get(v, keys[i]);
        return v;
}

/* Takes ownership of key (on success and failure). */
static cc_toml_entry *table_add(parser *ps, cc_toml_value *t, key_part *k, cc_toml_value *v)
{
        if (t->table.n >= CC_TOML_MAX_TABLE_ENTRIES) {
                perr_at(ps, -EINVAL, k->line, k->col, "too many keys in one table (limit %d)",
                        CC_TOML_MAX_TABLE_ENTRIES);
                free(TAKE_PTR(k->s));
                cc_toml_free(v);
                return NULL;
        }
        if ((t->table.n & (t->table.n - 1)) == 0) /* 0, 1, 2, 4, ... : grow */
                t->table.entries = xrealloc(t->table.entries,
                                            (t->table.n ? t->table.n * 2 : 1) * sizeof(cc_toml_entry));
        cc_toml_entry *e = &t->table.entries[t->table.n++];
        e->key = TAKE_PTR(k->s);
        e->line = k->line;
        e->column = k->col;
        e->value = v;
        return e;
}

/* ---- lexing helpers ---------------------------------------------------- */

static bool eof(parser *ps) { return ps->p >= ps->end; }
static int peek(parser *ps) { return eof(ps) ? -1 : (unsigned char)*ps->p; }
static int peek_at(parser *ps, size_t off)
{
        return (size_t)(ps->end - ps->p) > off ? (unsigned char)ps->p[off] : -1;
}

static void advance(parser *ps)
{
        if (eof(ps))
                return;
        unsigned char c = (unsigned char)*ps->p++;
        if (c == '\n') {
                ps->line++;
                ps->col = 1;
        } else if ((c & 0xC0) != 0x80) {
                ps->col++;
        }
}

static void skip_ws(parser *ps)
{
        while (peek(ps) == ' ' || peek(ps) == '\t')
                advance(ps);
}

static bool is_newline(parser *ps)
{
        return peek(ps) == '\n' || (peek(ps) == '\r' && peek_at(ps, 1) == '\n');
}

static bool is_control(int c) { return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f; }

/* Consumes a comment starting at '#', up to (not including) the newline. */
static int skip_comment(parser *ps)
{
        while (!eof(ps) && peek(ps) != '\n') {
                if (peek(ps) == '\r' && peek_at(ps, 1) == '\n')
                        break;
                if (is_control(peek(ps)))
                        return perr(ps, "control character in comment");
                advance(ps);
        }
        return 0;
}

static int expect_newline(parser *ps)
{
        if (eof(ps))
                return 0;
        if (peek(ps) == '\r') {
                if (peek_at(ps, 1) != '\n')
                        return perr(ps, "carriage return not followed by a newline");
                advance(ps);
        }
        if (peek(ps) != '\n')
                return perr(ps, "expected a newline or end of file");
        advance(ps);
        return 0;
}

/* After a key/value or a header: spaces, optional comment, newline. */
static int end_of_line(parser *ps)
{
        skip_ws(ps);
        if (peek(ps) == '#') {
                int r = skip_comment(ps);
                if (r < 0)
                        return r;
        }
        if (!eof(ps) && !is_newline(ps)) {
                if (peek(ps) == '\r')
                        return expect_newline(ps);
                return perr(ps, "unexpected '%c', expected a newline",
                            peek(ps) >= 0x20 && peek(ps) < 0x7f ? peek(ps) : '?');
        }
        return expect_newline(ps);
}

/* Spaces, tabs, newlines and comments (inside arrays). */
static int skip_ws_nl_comments(parser *ps)
{
        for (;;) {
                skip_ws(ps);
                if (peek(ps) == '#') {
                        int r = skip_comment(ps);
                        if (r < 0)
                                return r;
                } else if (peek(ps) == '\n' || peek(ps) == '\r') {
                        int r = expect_newline(ps);
                        if (r < 0)
                                return r;
                } else {
                        return 0;
                }
        }
}

/* Validates UTF-8 (no overlongs, no surrogates, <= U+10FFFF) and rejects NUL.
 * On error reports the position of the offending byte. */
static int check_utf8(parser *ps)
{
        while (!eof(ps)) {
                const unsigned char *s = (const unsigned char *)ps->p;
                size_t left = (size_t)(ps->end - ps->p);
                size_t n;
                uint32_t cp;
                if (s[0] == 0)
                        return perr(ps, "NUL byte in input");
                if (s[0] < 0x80) {
                        advance(ps);
                        continue;
                }
                if (s[0] >= 0xC2 && s[0] <= 0xDF) {
                        n = 2;
                        cp = s[0] & 0x1F;
                } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
                        n = 3;
                        cp = s[0] & 0x0F;
                } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
                        n = 4;
                        cp = s[0] & 0x07;
                } else {
                        return perr(ps, "invalid UTF-8");
                }
                if (left < n)
                        return perr(ps, "invalid UTF-8");
                for (size_t i = 1; i < n; i++) {
                        if ((s[i] & 0xC0) != 0x80)
                                return perr(ps, "invalid UTF-8");
                        cp = (cp << 6) | (s[i] & 0x3F);
                }
                if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
                    (cp >= 0xD800 && cp <= 0xDFFF))
                        return perr(ps, "invalid UTF-8");
                for (size_t i = 0; i < n; i++)
                        advance(ps);
        }
        return 0;
}

/* ---- strings ----------------------------------------------------------- */

typedef struct buf {
        char *s;
        size_t n, cap;
} buf;

static void buf_putc(buf *b, char c)
{
        if (b->n + 2 > b->cap) {
                b->cap = b->cap ? b->cap * 2 : 32;
                b->s = xrealloc(b->s, b->cap);
        }
        b->s[b->n++] = c;
        b->s[b->n] = 0;
}

static void buf_put_utf8(buf *b, uint32_t cp)
{
        if (cp < 0x80) {
                buf_putc(b, (char)cp);
        } else if (cp < 0x800) {
                buf_putc(b, (char)(0xC0 | (cp >> 6)));
                buf_putc(b, (char)(0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
                buf_putc(b, (char)(0xE0 | (cp >> 12)));
                buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
                buf_putc(b, (char)(0x80 | (cp & 0x3F)));
        } else {
                buf_putc(b, (char)(0xF0 | (cp >> 18)));
                buf_putc(b, (char)(0x80 | ((cp >> 12) & 0x3F)));
                buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
                buf_putc(b, (char)(0x80 | (cp & 0x3F)));
        }
}

static int hexval(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* At '"' or '\''. Multi-line forms are refused. Returns the string. */
static int parse_string(parser *ps, char **ret)
{
        int quote = peek(ps);
        unsigned line = ps->line, col = ps->col;
        if (peek_at(ps, 1) == quote && peek_at(ps, 2) == quote)
                return punsup(ps, "multi-line strings are unsupported");
        advance(ps);
        buf b = {0};
        buf_putc(&b, 0);
        b.n = 0;
        for (;;) {
                int c = peek(ps);
                if (c < 0 || c == '\n' || c == '\r') {
                        free(b.s);
                        return perr_at(ps, -EINVAL, line, col, "unterminated string");
                }
                if (c == quote) {
                        advance(ps);
                        break;
                }
                if (is_control(c)) {
                        free(b.s);
                        return perr(ps, "control character in string");
                }
                if (c == '\\' && quote == '"') {
                        unsigned eline = ps->line, ecol = ps->col;
                        advance(ps);
                        int e = peek(ps);
                        int ndigits = 0;
                        switch (e) {
                        case 'b': buf_putc(&b, '\b'); break;
                        case 't': buf_putc(&b, '\t'); break;
                        case 'n': buf_putc(&b, '\n'); break;
                        case 'f': buf_putc(&b, '\f'); break;
                        case 'r': buf_putc(&b, '\r'); break;
                        case '"': buf_putc(&b, '"'); break;
                        case '\\': buf_putc(&b, '\\'); break;
                        case 'u': ndigits = 4; break;
                        case 'U': ndigits = 8; break;
                        default:
                                free(b.s);
                                return perr_at(ps, -EINVAL, eline, ecol, "invalid escape sequence");
                        }
                        advance(ps);
                        if (ndigits) {
                                uint32_t cp = 0;
                                for (int i = 0; i < ndigits; i++) {
                                        int h = hexval(peek(ps));
                                        if (h < 0) {
                                                free(b.s);
                                                return perr_at(ps, -EINVAL, eline, ecol,
                                                               "invalid \\%c escape: expected %d hex digits",
                                                               e, ndigits);
                                        }
                                        cp = (cp << 4) | (uint32_t)h;
                                        advance(ps);
                                }
                                if (cp == 0) {
                                        free(b.s);
                                        return perr_at(ps, -EINVAL, eline, ecol,
                                                       "NUL character in string is not allowed");
                                }
                                if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                                        free(b.s);
                                        return perr_at(ps, -EINVAL, eline, ecol,
                                                       "escape is not a Unicode scalar value");
                                }
                                buf_put_utf8(&b, cp);
                        }
                        continue;
                }
                buf_putc(&b, (char)c);
                advance(ps);
        }
        *ret = b.s;
        return 0;
}

/* ---- keys -------------------------------------------------------------- */

static bool is_bare_char(int c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

bool cc_toml_is_bare_key(const char *s)
{
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!is_bare_char((unsigned char)*s))
                        return false;
        return true;
}

static void key_parts_free(key_part *parts, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(parts[i].s);
}

/* Parses a (dotted) key; leading/trailing spaces around components are
 * consumed. parts must hold CC_TOML_MAX_KEY_PARTS. */
static int parse_key(parser *ps, key_part *parts, size_t *ret_n)
{
        size_t n = 0;
        for (;;) {
                skip_ws(ps);
                if (n >= CC_TOML_MAX_KEY_PARTS) {
                        key_parts_free(parts, n);
                        return perr(ps, "key has too many components (limit %d)", CC_TOML_MAX_KEY_PARTS);
                }
                key_part *k = &parts[n];
                k->line = ps->line;
                k->col = ps->col;
                k->s = NULL;
                int c = peek(ps);
                if (c == '"' || c == '\'') {
                        if (peek_at(ps, 1) == c && peek_at(ps, 2) == c) {
                                key_parts_free(parts, n);
                                return perr(ps, "multi-line strings cannot be keys");
                        }
                        int r = parse_string(ps, &k->s);
                        if (r < 0) {
                                key_parts_free(parts, n);
                                return r;
                        }
                } else if (is_bare_char(c)) {
                        const char *start = ps->p;
                        while (is_bare_char(peek(ps)))
                                advance(ps);
                        k->s = strndup(start, (size_t)(ps->p - start));
                        if (!k->s)
                                abort();
                } else {
                        key_parts_free(parts, n);
                        if (c < 0 || c == '\n' || c == '\r')
                                return perr(ps, "expected a key");
                        if (c >= 0x20 && c < 0x7f)
                                return perr(ps, "invalid character '%c' in key", c);
                        return perr(ps, "invalid character in key");
                }
                n++;
                skip_ws(ps);
                if (peek(ps) != '.')
                        break;
                advance(ps);
        }
        *ret_n = n;
        return 0;
}

/* "a.b.\"c d\"" for messages: prefix (if any), then the first n parts,
 * quoted where needed. */
static char *key_display(const char *prefix, key_part *parts, size_t n)
{
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        if (!f)
                abort();
        if (prefix)
                fputs(prefix, f);
        for (size_t i = 0; i < n; i++) {
                if (i || prefix)
                        fputc('.', f);
                cc_toml_write_key(f, parts[i].s);
        }
        if (fclose(f) != 0 || !s)
                abort();
        return s;
}

/* ---- numbers and scalars ------------------------------------------------ */

static bool is_value_end(int c)
{
        return c < 0 || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ']' ||
               c == '#';
}

/* Digits of one base with single underscores between digits. */
static int parse_digits(parser *ps, const char *s, size_t len, int base, bool negative,
                        unsigned line, unsigned col, int64_t *ret)
{
        uint64_t v = 0;
        uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        bool prev_digit = false;
        if (len == 0)
                return perr_at(ps, -EINVAL, line, col, "invalid integer: no digits");
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '_') {
                        if (!prev_digit || i + 1 == len)
                                return perr_at(ps, -EINVAL, line, col,
                                               "invalid integer: '_' must be between digits");
                        prev_digit = false;
                        continue;
                }
                int d = hexval((unsigned char)s[i]);
                if (d < 0 || d >= base)
                        return perr_at(ps, -EINVAL, line, col, "invalid integer");
                if (v > (limit - (uint64_t)d) / (uint64_t)base)
                        return perr_at(ps, -EINVAL, line, col, "integer out of 64-bit range");
                v = v * (uint64_t)base + (uint64_t)d;
                prev_digit = true;
        }
        if (negative)
                *ret = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        else
                *ret = (int64_t)v;
        return 0;
}

static int parse_number(parser *ps, cc_toml_value **ret)
{
        unsigned line = ps->line, col = ps->col;
        const char *start = ps->p;
        /* Maximal token that could belong to a number, float or date. */
        while (!eof(ps)) {
                int c = peek(ps);
                if (is_bare_char(c) || c == '+' || c == '.' || c == ':')
                        advance(ps);
                else
                        break;
        }
        size_t len = (size_t)(ps->p - start);
        const char *s = start;
        bool negative = false, sign = false;
        if (len && (s[0] == '+' || s[0] == '-')) {
                sign = true;
                negative = s[0] == '-';
                s++;
                len--;
        }
        if ((len == 3 && (memcmp(s, "inf", 3) == 0 || memcmp(s, "nan", 3) == 0)))
                return perr_at(ps, -EOPNOTSUPP, line, col, "floats are unsupported");
        int base = 0;
        if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b'))
                base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
        if (base) {
                if (sign)
                        return perr_at(ps, -EINVAL, line, col,
                                       "invalid integer: a sign is not allowed with 0x, 0o or 0b");
        } else {
                if (memchr(s, ':', len) || (len > 0 && memchr(s + 1, '-', len - 1)))
                        return perr_at(ps, -EOPNOTSUPP, line, col, "dates and times are unsupported");
                if (memchr(s, '.', len) || memchr(s, 'e', len) || memchr(s, 'E', len))
                        return perr_at(ps, -EOPNOTSUPP, line, col, "floats are unsupported");
                if (len > 1 && s[0] == '0')
                        return perr_at(ps, -EINVAL, line, col, "invalid integer: leading zero");
        }
        if (!is_value_end(peek(ps)))
                return perr(ps, "invalid character after integer");
        int64_t v;
        int r = base ? parse_digits(ps, s + 2, len - 2, base, false, line, col, &v)
                     : parse_digits(ps, s, len, 10, negative, line, col, &v);
        if (r < 0)
                return r;
        cc_toml_value *val = value_new(ps, CC_TOML_INTEGER, line, col);
        if (!val)
                return -EINVAL;
        val->integer = v;
        *ret = val;
        return 0;
}

static int parse_value(parser *ps, unsigned depth, cc_toml_value **ret);

static int parse_array(parser *ps, unsigned depth, cc_toml_value **ret)
{
        if (depth >= CC_TOML_MAX_DEPTH)
                return perr(ps, "arrays nested too deeply (limit %d)", CC_TOML_MAX_DEPTH);
        cc_toml_value *arr = value_new(ps, CC_TOML_ARRAY, ps->line, ps->col);
        if (!arr)
                return -EINVAL;
        _cleanup_toml_ cc_toml_value *a = arr;
        advance(ps); /* '[' */
        for (;;) {
                int r = skip_ws_nl_comments(ps);
                if (r < 0)
                        return r;
                if (peek(ps) == ']') {
                        advance(ps);
                        break;
                }
                cc_toml_value *item = NULL;
                r = parse_value(ps, depth + 1, &item);
                if (r < 0)
                        return r;
                if ((a->array.n & (a->array.n - 1)) == 0)
                        a->array.items = xrealloc(a->array.items,
                                                  (a->array.n ? a->array.n * 2 : 1) * sizeof(*a->array.items));
                a->array.items[a->array.n++] = item;
                r = skip_ws_nl_comments(ps);
                if (r < 0)
                        return r;
                if (peek(ps) == ',') {
                        advance(ps);
                        continue;
                }
                if (peek(ps) == ']') {
                        advance(ps);
                        break;
                }
                if (eof(ps))
                        return perr(ps, "unterminated array");
                return perr(ps, "expected ',' or ']' in array");
        }
        *ret = TAKE_PTR(a);
        return 0;
}

static bool match_word(parser *ps, const char *w)
{
        size_t n = strlen(w);
        return (size_t)(ps->end - ps->p) >= n && memcmp(ps->p, w, n) == 0 &&
               is_value_end(peek_at(ps, n));
}

static int parse_value(parser *ps, unsigned depth, cc_toml_value **ret)
{
        int c = peek(ps);
        unsigned line = ps->line, col = ps->col;
        if (c == '"' || c == '\'') {
                char *s = NULL;
                int r = parse_string(ps, &s);
                if (r < 0)
                        return r;
                cc_toml_value *v = value_new(ps, CC_TOML_STRING, line, col);
                if (!v) {
                        free(s);
                        return -EINVAL;
                }
                v->string = s;
                *ret = v;
                return 0;
        }
        if (c == '[')
                return parse_array(ps, depth, ret);
        if (c == '{')
                return punsup(ps, "inline tables are unsupported");
        if (match_word(ps, "true") || match_word(ps, "false")) {
                bool b = c == 't';
                cc_toml_value *v = value_new(ps, CC_TOML_BOOLEAN, line, col);
                if (!v)
                        return -EINVAL;
                v->boolean = b;
                for (size_t i = b ? 4 : 5; i > 0; i--)
                        advance(ps);
                *ret = v;
                return 0;
        }
        if ((c >= '0' && c <= '9') || c == '+' || c == '-' || match_word(ps, "inf") ||
            match_word(ps, "nan"))
                return parse_number(ps, ret);
        if (c < 0 || c == '\n' || c == '\r' || c == '#')
                return perr(ps, "expected a value");
        return perr(ps, "invalid value");
}

/* ---- statements ---------------------------------------------------------- */

static int parse_header(parser *ps)
{
        unsigned hline = ps->line, hcol = ps->col;
        if (peek_at(ps, 1) == '[')
                return punsup(ps, "arrays of tables ([[...]]) are unsupported");
        advance(ps); /* '[' */
        key_part parts[CC_TOML_MAX_KEY_PARTS];
        size_t n = 0;
        int r = parse_key(ps, parts, &n);
        if (r < 0)
                return r;
        if (peek(ps) != ']') {
                key_parts_free(parts, n);
                return perr(ps, "expected ']' at end of table header");
        }
        advance(ps);
        /* Names for messages, built before table_add() takes the parts. */
        char *names[CC_TOML_MAX_KEY_PARTS];
        for (size_t i = 0; i < n; i++)
                names[i] = key_display(NULL, parts, i + 1);

        cc_toml_value *t = ps->root;
        for (size_t i = 0; i < n; i++) {
                cc_toml_entry *e = table_find(t, parts[i].s);
                bool last = i + 1 == n;
                if (!e) {
                        cc_toml_value *nt = value_new(ps, CC_TOML_TABLE, hline, hcol);
                        if (!nt)
                                goto fail;
                        nt->table.origin = last ? ORIGIN_HEADER : ORIGIN_IMPLICIT;
                        e = table_add(ps, t, &parts[i], nt);
                        if (!e)
                                goto fail;
                } else if (e->value->type != CC_TOML_TABLE) {
                        perr_at(ps, -EINVAL, hline, hcol, "key '%s' is already defined as %s %s", names[i],
                                e->value->type == CC_TOML_INTEGER || e->value->type == CC_TOML_ARRAY ? "an" : "a",
                                cc_toml_type_name(e->value->type));
                        goto fail;
                } else if (last) {
                        if (e->value->table.origin != ORIGIN_IMPLICIT) {
                                perr_at(ps, -EINVAL, hline, hcol, "table '%s' is defined more than once",
                                        names[n - 1]);
                                goto fail;
                        }
                        e->value->table.origin = ORIGIN_HEADER;
                        e->value->line = hline;
                        e->value->column = hcol;
                }
                t = e->value;
        }
        free(ps->cur_path);
        ps->cur_path = TAKE_PTR(names[n - 1]);
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        key_parts_free(parts, n);
        ps->cur = t;
        return 0;
fail:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        key_parts_free(parts, n);
        return -EINVAL;
}

static int parse_keyval(parser *ps)
{
        key_part parts[CC_TOML_MAX_KEY_PARTS];
        size_t n = 0;
        unsigned kline = ps->line, kcol = ps->col;
        int r = parse_key(ps, parts, &n);
        if (r < 0)
                return r;
        if (peek(ps) != '=') {
                key_parts_free(parts, n);
                return perr(ps, "expected '=' after key");
        }
        advance(ps);
        skip_ws(ps);
        cc_toml_value *v = NULL;
        r = parse_value(ps, 0, &v);
        if (r < 0) {
                key_parts_free(parts, n);
                return r;
        }

        char *names[CC_TOML_MAX_KEY_PARTS];
        for (size_t i = 0; i < n; i++)
                names[i] = key_display(ps->cur_path, parts, i + 1);
        cc_toml_value *t = ps->cur;
        for (size_t i = 0; i + 1 < n; i++) {
                cc_toml_entry *e = table_find(t, parts[i].s);
                if (!e) {
                        cc_toml_value *nt = value_new(ps, CC_TOML_TABLE, parts[i].line, parts[i].col);
                        if (!nt)
                                goto fail;
                        nt->table.origin = ORIGIN_DOTTED;
                        e = table_add(ps, t, &parts[i], nt);
                        if (!e)
                                goto fail;
                } else if (e->value->type != CC_TOML_TABLE) {
                        perr_at(ps, -EINVAL, kline, kcol, "key '%s' is already defined as %s %s", names[i],
                                e->value->type == CC_TOML_INTEGER || e->value->type == CC_TOML_ARRAY ? "an" : "a",
                                cc_toml_type_name(e->value->type));
                        goto fail;
                } else if (e->value->table.origin != ORIGIN_DOTTED) {
                        perr_at(ps, -EINVAL, kline, kcol,
                                "table '%s' is defined by a [header] and cannot be extended with dotted keys",
                                names[i]);
                        goto fail;
                }
                t = e->value;
        }
        if (table_find(t, parts[n - 1].s)) {
                perr_at(ps, -EINVAL, kline, kcol, "duplicate key '%s'", names[n - 1]);
                goto fail;
        }
        if (!table_add(ps, t, &parts[n - 1], TAKE_PTR(v)))
                goto fail;
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        key_parts_free(parts, n);
        return 0;
fail:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        cc_toml_free(v);
        key_parts_free(parts, n);
        return -EINVAL;
}

cc_toml_value *cc_toml_parse(const char *data, size_t len, const char *name, cc_error **ret_err)
{
        parser ps = {
                .p = data,
                .end = data + len,
                .line = 1,
                .col = 1,
                .name = name ? name : "<input>",
                .ret_err = ret_err,
        };
        if (len > CC_TOML_MAX_SIZE) {
                cc_error_set(ret_err, -EFBIG, "%s: larger than %d bytes", ps.name, CC_TOML_MAX_SIZE);
                return NULL;
        }
        if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
                ps.p += 3;
        const char *body = ps.p;
        if (check_utf8(&ps) < 0)
                return NULL;
        ps.p = body;
        ps.line = 1;
        ps.col = 1;

        _cleanup_toml_ cc_toml_value *root = value_new(&ps, CC_TOML_TABLE, 1, 1);
        root->table.origin = ORIGIN_ROOT;
        ps.root = ps.cur = root;
        while (!eof(&ps)) {
                skip_ws(&ps);
                int c = peek(&ps);
                int r = 0;
                if (c < 0)
                        break;
                if (c == '#' || c == '\n' || c == '\r')
                        r = end_of_line(&ps);
                else if (c == '[')
                        r = parse_header(&ps) < 0 ? -1 : end_of_line(&ps);
                else
                        r = parse_keyval(&ps) < 0 ? -1 : end_of_line(&ps);
                if (r < 0) {
                        free(ps.cur_path);
                        return NULL;
                }
        }
        free(ps.cur_path);
        return TAKE_PTR(root);
}

cc_toml_value *cc_toml_parse_file(const char *path, cc_error **ret_err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                cc_error_errno(ret_err, "%s: open", path);
                return NULL;
        }
        struct stat st;
        if (fstat(fd, &st) < 0) {
                cc_error_errno(ret_err, "%s: stat", path);
                return NULL;
        }
        if (!S_ISREG(st.st_mode)) {
                cc_error_set(ret_err, -EINVAL, "%s: not a regular file", path);
                return NULL;
        }
        if (st.st_size > CC_TOML_MAX_SIZE) {
                cc_error_set(ret_err, -EFBIG, "%s: larger than %d bytes", path, CC_TOML_MAX_SIZE);
                return NULL;
        }
        /* Read at most the limit + 1 bytes whatever stat said (the file may grow). */
        size_t cap = CC_TOML_MAX_SIZE + 1, n = 0;
        _cleanup_free_ char *data = xcalloc(1, cap);
        for (;;) {
                ssize_t k = read(fd, data + n, cap - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        cc_error_errno(ret_err, "%s: read", path);
                        return NULL;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n == cap)
                        break;
        }
        if (n > CC_TOML_MAX_SIZE) {
                cc_error_set(ret_err, -EFBIG, "%s: larger than %d bytes", path, CC_TOML_MAX_SIZE);
                return NULL;
        }
        return cc_toml_parse(data, n, path, ret_err);
}

/* ---- writing -------------------------------------------------------------- */

void cc_toml_write_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                switch (*p) {
                case '"': fputs("\\\"", f); break;
                case '\\': fputs("\\\\", f); break;
                case '\b': fputs("\\b", f); break;
                case '\t': fputs("\\t", f); break;
                case '\n': fputs("\\n", f); break;
                case '\f': fputs("\\f", f); break;
                case '\r': fputs("\\r", f); break;
                default:
                        if (*p < 0x20 || *p == 0x7f)
                                fprintf(f, "\\u%04X", *p);
                        else
                                fputc(*p, f);
                }
        }
        fputc('"', f);
}

void cc_toml_write_key(FILE *f, const char *key)
{
        if (cc_toml_is_bare_key(key))
                fputs(key, f);
        else
                cc_toml_write_string(f, key);
}
