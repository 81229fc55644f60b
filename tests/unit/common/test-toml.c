/* SPDX-License-Identifier: Apache-2.0 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/toml.h"

static cc_toml_value *parse(const char *doc)
{
        cc_error *err = NULL;
        cc_toml_value *v = cc_toml_parse(doc, strlen(doc), "t.toml", &err);
        if (!v)
                fail_msg("unexpected error: %s", err->msg);
        assert_null(err);
        return v;
}

static const cc_toml_value *get(const cc_toml_value *root, const char *dotted)
{
        /* Test helper: splits on '.', so only for keys without dots. */
        char buf[256];
        const char *parts[16];
        size_t n = 0;
        snprintf(buf, sizeof(buf), "%s", dotted);
        for (char *save = NULL, *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save))
                parts[n++] = t;
        return cc_toml_get_path(root, parts, n);
}

static void test_valid_document(void **state)
{
        const char *doc =
                "# leading comment\n"
                "title = \"cocoon\" # trailing comment\n"
                "bare_key-1 = 'C:\\path\\no escapes'\n"
                "\"quoted key\" = \"tab\\there \\\"q\\\" back\\\\slash \\u00e9\\U0001F600 nl\\n\"\n"
                "'literal key' = true\n"
                "site.\"google.com\" = false\n"
                "  indented . dotted  =  -42\n"
                "\n"
                "[server]\n"
                "dec = +1_000_000\n"
                "hex = 0xDEAD_beef\n"
                "oct = 0o755\n"
                "bin = 0b1010\n"
                "zero = -0\n"
                "max = 9223372036854775807\n"
                "min = -9223372036854775808\n"
                "\n"
                "[ image . registries . \"docker.io:5000\" ]\n"
                "mirrors = [\n"
                "  \"https://a\", # first\n"
                "  'https://b',\n"
                "]\n"
                "empty = []\n"
                "nested = [[1, 2], [true], [\"x\"]]\n"
                "mixed = [1, \"a\", false]\n";
        _cleanup_toml_ cc_toml_value *root = parse(doc);
        assert_int_equal(root->type, CC_TOML_TABLE);
        assert_string_equal(get(root, "title")->string, "cocoon");
        assert_string_equal(cc_toml_get(root, "bare_key-1")->string, "C:\\path\\no escapes");
        assert_string_equal(cc_toml_get(root, "quoted key")->string,
                            "tab\there \"q\" back\\slash \xc3\xa9\xf0\x9f\x98\x80 nl\n");
        assert_true(cc_toml_get(root, "literal key")->boolean);
        const char *site[] = {"site", "google.com"};
        assert_int_equal(cc_toml_get_path(root, site, 2)->type, CC_TOML_BOOLEAN);
        assert_false(cc_toml_get_path(root, site, 2)->boolean);
        assert_int_equal(get(root, "indented.dotted")->integer, -42);

        assert_int_equal(get(root, "server.dec")->integer, 1000000);
        assert_int_equal(get(root, "server.hex")->integer, 0xDEADBEEF);
        assert_int_equal(get(root, "server.oct")->integer, 0755);
        assert_int_equal(get(root, "server.bin")->integer, 10);
        assert_int_equal(get(root, "server.zero")->integer, 0);
        assert_true(get(root, "server.max")->integer == INT64_MAX);
        assert_true(get(root, "server.min")->integer == INT64_MIN);

        const char *reg[] = {"image", "registries", "docker.io:5000"};
        const cc_toml_value *r = cc_toml_get_path(root, reg, 3);
        assert_non_null(r);
        assert_int_equal(r->type, CC_TOML_TABLE);
        assert_int_equal(r->line, 18);
        assert_int_equal(r->column, 1);
        const cc_toml_value *m = cc_toml_get(r, "mirrors");
        assert_int_equal(m->type, CC_TOML_ARRAY);
        assert_int_equal(m->array.n, 2);
        assert_string_equal(m->array.items[0]->string, "https://a");
        assert_string_equal(m->array.items[1]->string, "https://b");
        assert_int_equal(m->array.items[1]->line, 21);
        assert_int_equal(m->array.items[1]->column, 3);
        assert_int_equal(cc_toml_get(r, "empty")->array.n, 0);
        const cc_toml_value *nested = cc_toml_get(r, "nested");
        assert_int_equal(nested->array.n, 3);
        assert_int_equal(nested->array.items[0]->array.items[1]->integer, 2);
        assert_int_equal(cc_toml_get(r, "mixed")->array.n, 3);

        /* Document order and positions of entries. */
        assert_string_equal(root->table.entries[0].key, "title");
        assert_int_equal(root->table.entries[0].line, 2);
        assert_int_equal(root->table.entries[0].column, 1);
        const cc_toml_value *ind = cc_toml_get(root, "indented");
        assert_int_equal(ind->table.entries[0].line, 7);
        assert_int_equal(ind->table.entries[0].column, 14);
        assert_int_equal(ind->table.entries[0].value->column, 25);

        assert_null(cc_toml_get(root, "nope"));
        assert_null(cc_toml_get(cc_toml_get(root, "title"), "x"));
}

static void test_empty_bom_crlf(void **state)
{
        _cleanup_toml_ cc_toml_value *a = parse("");
        assert_int_equal(a->table.n, 0);
        _cleanup_toml_ cc_toml_value *b = parse("\xEF\xBB\xBF# only a comment");
        assert_int_equal(b->table.n, 0);
        _cleanup_toml_ cc_toml_value *c = parse("a = 1\r\n[t]\r\nb = \"x\" # c\r\n");
        assert_int_equal(cc_toml_get(c, "a")->integer, 1);
        assert_string_equal(get(c, "t.b")->string, "x");
        assert_int_equal(get(c, "t.b")->line, 3);
        _cleanup_toml_ cc_toml_value *d = parse("a = 1"); /* no final newline */
        assert_int_equal(cc_toml_get(d, "a")->integer, 1);
}

static void test_table_rules_valid(void **state)
{
        /* A header may define a table implied by an earlier, deeper header. */
        _cleanup_toml_ cc_toml_value *a = parse("[a.b]\nx = 1\n[a]\ny = 2\n");
        assert_int_equal(get(a, "a.b.x")->integer, 1);
        assert_int_equal(get(a, "a.y")->integer, 2);
        assert_int_equal(cc_toml_get(a, "a")->line, 3);
        /* A header may open a sub-table of a table made by dotted keys. */
        _cleanup_toml_ cc_toml_value *b =
                parse("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n[fruit.apple.texture]\nsmooth = true\n");
        assert_string_equal(get(b, "fruit.apple.color")->string, "red");
        assert_true(get(b, "fruit.apple.taste.sweet")->boolean);
        assert_true(get(b, "fruit.apple.texture.smooth")->boolean);
        /* Keys that look like other things. */
        _cleanup_toml_ cc_toml_value *c = parse("true = 1\n1234 = 2\n3.14 = 3\n\"\" = 4\n");
        assert_int_equal(cc_toml_get(c, "true")->integer, 1);
        assert_int_equal(cc_toml_get(c, "1234")->integer, 2);
        assert_int_equal(get(c, "3.14")->integer, 3);
        assert_int_equal(cc_toml_get(c, "")->integer, 4);
}

typedef struct err_case {
        const char *doc;
        int code;
        const char *where; /* "t.toml:L:C: " */
        const char *reason; /* substring */
        size_t len;         /* 0: strlen(doc) */
} err_case;

static const err_case err_cases[] = {
        {"a = 1\na = 2\n", -EINVAL, "t.toml:2:1: ", "duplicate key 'a'"},
        {"[t]\n\"x.y\" = 1\n'x.y' = 2\n", -EINVAL, "t.toml:3:1: ", "duplicate key 't.\"x.y\"'"},
        {"[a]\n[a]\n", -EINVAL, "t.toml:2:1: ", "table 'a' is defined more than once"},
        {"[a.\"b c\"]\n[ a . 'b c' ]\n", -EINVAL, "t.toml:2:1: ", "table 'a.\"b c\"' is defined more than once"},
        {"[a.b]\n[a]\nb = 1\n", -EINVAL, "t.toml:3:1: ", "duplicate key 'a.b'"},
        {"a = 1\n[a]\n", -EINVAL, "t.toml:2:1: ", "key 'a' is already defined as an integer"},
        {"a = 1\n[a.b]\n", -EINVAL, "t.toml:2:1: ", "key 'a' is already defined as an integer"},
        {"a.b = 1\n[a]\n", -EINVAL, "t.toml:2:1: ", "table 'a' is defined more than once"},
        {"[a]\nb.c = 1\n[a.b]\n", -EINVAL, "t.toml:3:1: ", "table 'a.b' is defined more than once"},
        {"[a.b]\n[a]\nb.c = 1\n", -EINVAL, "t.toml:3:1: ", "table 'a.b' is defined by a [header] and cannot be extended"},
        {"[s.\"t u\"]\nx.y = 1\nx . y = 2\n", -EINVAL, "t.toml:3:1: ", "duplicate key 's.\"t u\".x.y'"},
        {"a = 1\na.b = 2\n", -EINVAL, "t.toml:2:1: ", "key 'a' is already defined as an integer"},
        {"x = \"s\"\nx.y = 2\n", -EINVAL, "t.toml:2:1: ", "already defined as a string"},
        /* unsupported features */
        {"a = 1.5\n", -EOPNOTSUPP, "t.toml:1:5: ", "floats are unsupported"},
        {"a = 1e3\n", -EOPNOTSUPP, "t.toml:1:5: ", "floats are unsupported"},
        {"a = inf\n", -EOPNOTSUPP, "t.toml:1:5: ", "floats are unsupported"},
        {"a = -nan\n", -EOPNOTSUPP, "t.toml:1:5: ", "floats are unsupported"},
        {"a = 1979-05-27\n", -EOPNOTSUPP, "t.toml:1:5: ", "dates and times are unsupported"},
        {"a = 1979-05-27T07:32:00Z\n", -EOPNOTSUPP, "t.toml:1:5: ", "dates and times are unsupported"},
        {"a = 07:32:00\n", -EOPNOTSUPP, "t.toml:1:5: ", "dates and times are unsupported"},
        {"a = {x = 1}\n", -EOPNOTSUPP, "t.toml:1:5: ", "inline tables are unsupported"},
        {"[[a]]\n", -EOPNOTSUPP, "t.toml:1:1: ", "arrays of tables ([[...]]) are unsupported"},
        {"a = \"\"\"x\"\"\"\n", -EOPNOTSUPP, "t.toml:1:5: ", "multi-line strings are unsupported"},
        {"a = '''x'''\n", -EOPNOTSUPP, "t.toml:1:5: ", "multi-line strings are unsupported"},
        {"a = [\n  1,\n  1.5,\n]\n", -EOPNOTSUPP, "t.toml:3:3: ", "floats are unsupported"},
        /* strings */
        {"a = \"abc\n", -EINVAL, "t.toml:1:5: ", "unterminated string"},
        {"a = 'abc", -EINVAL, "t.toml:1:5: ", "unterminated string"},
        {"a = \"x\\qy\"\n", -EINVAL, "t.toml:1:7: ", "invalid escape sequence"},
        {"a = \"\\u00\"\n", -EINVAL, "t.toml:1:6: ", "expected 4 hex digits"},
        {"a = \"\\uD800\"\n", -EINVAL, "t.toml:1:6: ", "not a Unicode scalar value"},
        {"a = \"\\U00110000\"\n", -EINVAL, "t.toml:1:6: ", "not a Unicode scalar value"},
        {"a = \"\\u0000\"\n", -EINVAL, "t.toml:1:6: ", "NUL character"},
        {"a = \"tab\tok \x01\"\n", -EINVAL, "t.toml:1:13: ", "control character in string"},
        {"a = \"\xff\"\n", -EINVAL, "t.toml:1:6: ", "invalid UTF-8"},
        {"a = \"\xed\xa0\x80\"\n", -EINVAL, "t.toml:1:6: ", "invalid UTF-8"}, /* surrogate */
        {"a = \"\xc0\xaf\"\n", -EINVAL, "t.toml:1:6: ", "invalid UTF-8"},     /* overlong */
        {"\"\xc3\xa9\" = \"\xc3\xa9\" x\n", -EINVAL, "t.toml:1:11: ", "unexpected 'x'"},
        /* integers */
        {"a = 01\n", -EINVAL, "t.toml:1:5: ", "leading zero"},
        {"a = 1__0\n", -EINVAL, "t.toml:1:5: ", "'_' must be between digits"},
        {"a = _1\n", -EINVAL, "t.toml:1:5: ", "invalid value"},
        {"a = 1_\n", -EINVAL, "t.toml:1:5: ", "'_' must be between digits"},
        {"a = 9223372036854775808\n", -EINVAL, "t.toml:1:5: ", "out of 64-bit range"},
        {"a = -9223372036854775809\n", -EINVAL, "t.toml:1:5: ", "out of 64-bit range"},
        {"a = 0x1_0000_0000_0000_0000\n", -EINVAL, "t.toml:1:5: ", "out of 64-bit range"},
        {"a = -0x1\n", -EINVAL, "t.toml:1:5: ", "a sign is not allowed"},
        {"a = 0x\n", -EINVAL, "t.toml:1:5: ", "no digits"},
        {"a = 0o8\n", -EINVAL, "t.toml:1:5: ", "invalid integer"},
        {"a = 12abc\n", -EINVAL, "t.toml:1:5: ", "invalid integer"},
        {"a = +\n", -EINVAL, "t.toml:1:5: ", "no digits"},
        /* other values and structure */
        {"a = tru\n", -EINVAL, "t.toml:1:5: ", "invalid value"},
        {"a = truex\n", -EINVAL, "t.toml:1:5: ", "invalid value"},
        {"a = 1 2\n", -EINVAL, "t.toml:1:7: ", "unexpected '2', expected a newline"},
        {"\tk = 1 2\n", -EINVAL, "t.toml:1:8: ", "unexpected '2'"},
        {"[a] x = 1\n", -EINVAL, "t.toml:1:5: ", "unexpected 'x'"},
        {"a = [1, 2", -EINVAL, "t.toml:1:10: ", "unterminated array"},
        {"a = [1 2]\n", -EINVAL, "t.toml:1:8: ", "expected ',' or ']' in array"},
        {"a = [1,,2]\n", -EINVAL, "t.toml:1:8: ", "invalid value"},
        {"a = [\n", -EINVAL, "t.toml:2:1: ", "expected a value"},
        {"a\n", -EINVAL, "t.toml:1:2: ", "expected '=' after key"},
        {"a b = 1\n", -EINVAL, "t.toml:1:3: ", "expected '=' after key"},
        {"= 1\n", -EINVAL, "t.toml:1:1: ", "invalid character '=' in key"},
        {"a. = 1\n", -EINVAL, "t.toml:1:4: ", "invalid character '=' in key"},
        {"a = \n", -EINVAL, "t.toml:1:5: ", "expected a value"},
        {"a = # c\n", -EINVAL, "t.toml:1:5: ", "expected a value"},
        {"[]\n", -EINVAL, "t.toml:1:2: ", "invalid character ']' in key"},
        {"[a\n", -EINVAL, "t.toml:1:3: ", "expected ']' at end of table header"},
        {"\"\"\"a\"\"\" = 1\n", -EINVAL, "t.toml:1:1: ", "multi-line strings cannot be keys"},
        {"# ok\n# bad \x01 char\n", -EINVAL, "t.toml:2:7: ", "control character in comment"},
        {"a = 1\r", -EINVAL, "t.toml:1:6: ", "carriage return not followed by a newline"},
        {"a = 1\rb = 2\n", -EINVAL, "t.toml:1:6: ", "carriage return"},
        {"a = \"x\0y\"", -EINVAL, "t.toml:1:7: ", "NUL byte", 9},
        /* limits */
        {"a = [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]\n", -EINVAL, "t.toml:1:21: ", "arrays nested too deeply"},
        {"a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a = 1\n", -EINVAL, "t.toml:1:33: ", "too many components"},
};

static void test_errors(void **state)
{
        for (size_t i = 0; i < CC_ARRAY_SIZE(err_cases); i++) {
                const err_case *c = &err_cases[i];
                size_t len = c->len ? c->len : strlen(c->doc);
                cc_error *err = NULL;
                cc_toml_value *v = cc_toml_parse(c->doc, len, "t.toml", &err);
                if (v || !err)
                        fail_msg("case %zu (%s): parsed but should fail", i, c->doc);
                if (strncmp(err->msg, c->where, strlen(c->where)) != 0 || !strstr(err->msg, c->reason) ||
                    err->code != c->code)
                        fail_msg("case %zu (%s): got \"%s\" (code %d), want \"%s...%s\" (code %d)", i, c->doc,
                                 err->msg, err->code, c->where, c->reason, c->code);
                cc_error_free(err);
        }
}

static void expect_parse_error(const char *doc, size_t len, int code, const char *msg)
{
        cc_error *err = NULL;
        cc_toml_value *v = cc_toml_parse(doc, len, "t.toml", &err);
        assert_null(v);
        assert_non_null(err);
        assert_int_equal(err->code, code);
        if (!strstr(err->msg, msg))
                fail_msg("got \"%s\", want \"%s\"", err->msg, msg);
        cc_error_free(err);
}

static void test_size_limits(void **state)
{
        /* Exactly the limit parses; one byte more is refused before parsing. */
        size_t n = CC_TOML_MAX_SIZE;
        char *doc = malloc(n + 1);
        assert_non_null(doc);
        memset(doc, '\n', n + 1);
        memcpy(doc, "a = 1", 5);
        cc_error *err = NULL;
        cc_toml_value *v = cc_toml_parse(doc, n, "t.toml", &err);
        assert_non_null(v);
        cc_toml_free(v);
        expect_parse_error(doc, n + 1, -EFBIG, "t.toml: larger than 1048576 bytes");
        free(doc);

        /* Keys per table. */
        char *big = NULL;
        size_t blen = 0;
        FILE *f = open_memstream(&big, &blen);
        for (int i = 0; i <= CC_TOML_MAX_TABLE_ENTRIES; i++)
                fprintf(f, "k%d = %d\n", i, i);
        fclose(f);
        expect_parse_error(big, blen, -EINVAL, "t.toml:4097:1: too many keys in one table (limit 4096)");
        free(big);

        /* Values per document. */
        f = open_memstream(&big, &blen);
        fputs("a = [", f);
        for (int i = 0; i < CC_TOML_MAX_VALUES; i++)
                fputs("1,", f);
        fputs("]\n", f);
        fclose(f);
        expect_parse_error(big, blen, -EINVAL, "too many values (limit 65536)");
        free(big);

        /* Nesting at the limit is fine. */
        _cleanup_toml_ cc_toml_value *ok = parse("a = [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]\n");
        assert_non_null(ok);
}

static char tmpdir[] = "/tmp/test-toml-XXXXXX";

static void test_parse_file(void **state)
{
        assert_non_null(mkdtemp(tmpdir));
        char path[256];
        snprintf(path, sizeof(path), "%s/a.toml", tmpdir);

        cc_error *err = NULL;
        assert_null(cc_toml_parse_file(path, &err));
        assert_int_equal(err->code, -ENOENT);
        cc_error_free(TAKE_PTR(err));

        FILE *f = fopen(path, "w");
        fputs("[x]\ny = [1,\n 2.5]\n", f);
        fclose(f);
        assert_null(cc_toml_parse_file(path, &err));
        char want[300];
        snprintf(want, sizeof(want), "%s:3:2: floats are unsupported", path);
        assert_string_equal(err->msg, want);
        cc_error_free(TAKE_PTR(err));

        f = fopen(path, "w");
        fputs("[x]\ny = [1, 2]\n", f);
        fclose(f);
        cc_toml_value *v = cc_toml_parse_file(path, &err);
        assert_non_null(v);
        assert_null(err);
        assert_int_equal(get(v, "x.y")->array.n, 2);
        cc_toml_free(v);

        /* Larger than the limit. */
        f = fopen(path, "w");
        for (int i = 0; i < CC_TOML_MAX_SIZE / 64 + 1; i++)
                fprintf(f, "%-63s\n", "# padding");
        fclose(f);
        assert_null(cc_toml_parse_file(path, &err));
        assert_int_equal(err->code, -EFBIG);
        cc_error_free(TAKE_PTR(err));

        assert_null(cc_toml_parse_file(tmpdir, &err));
        assert_non_null(strstr(err->msg, "not a regular file"));
        cc_error_free(TAKE_PTR(err));

        unlink(path);
        rmdir(tmpdir);
}

static void test_write_roundtrip(void **state)
{
        const char *strs[] = {"plain", "", "q\"uo\\te", "ctl\x01\x1f\x7f\b\t\n\f\r", "utf8 \xc3\xa9 \xe2\x82\xac",
                              "a.b", "with space"};
        for (size_t i = 0; i < CC_ARRAY_SIZE(strs); i++) {
                char *doc = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&doc, &len);
                cc_toml_write_key(f, strs[i]);
                fputs(" = ", f);
                cc_toml_write_string(f, strs[i]);
                fputc('\n', f);
                fclose(f);
                cc_error *err = NULL;
                cc_toml_value *v = cc_toml_parse(doc, len, "w", &err);
                if (!v)
                        fail_msg("%s: %s", doc, err->msg);
                assert_int_equal(v->table.n, 1);
                assert_string_equal(v->table.entries[0].key, strs[i]);
                assert_string_equal(v->table.entries[0].value->string, strs[i]);
                cc_toml_free(v);
                free(doc);
        }
        assert_true(cc_toml_is_bare_key("a-b_C9"));
        assert_false(cc_toml_is_bare_key("a.b"));
        assert_false(cc_toml_is_bare_key(""));
        assert_string_equal(cc_toml_type_name(CC_TOML_ARRAY), "array");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_document),
                cmocka_unit_test(test_empty_bom_crlf),
                cmocka_unit_test(test_table_rules_valid),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_size_limits),
                cmocka_unit_test(test_parse_file),
                cmocka_unit_test(test_write_roundtrip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
