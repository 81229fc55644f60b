/* SPDX-License-Identifier: Apache-2.0 */
/* Golden-frame tests for the WebSocket codec (RFC 6455 section 5.7 examples). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cri-server/streaming/websocket.h"

static void test_rfc_examples(void **state)
{
        ws_frame_header h;
        /* unmasked "Hello" */
        static const uint8_t unmasked[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
        assert_int_equal(ws_parse_frame_header(unmasked, sizeof(unmasked), &h), 2);
        assert_true(h.fin);
        assert_int_equal(h.opcode, WS_OP_TEXT);
        assert_false(h.masked);
        assert_int_equal(h.length, 5);

        /* masked "Hello" */
        uint8_t masked[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
        assert_int_equal(ws_parse_frame_header(masked, sizeof(masked), &h), 6);
        assert_true(h.masked);
        assert_memory_equal(h.mask, "\x37\xfa\x21\x3d", 4);
        ws_mask(masked + 6, 5, h.mask, 0);
        assert_memory_equal(masked + 6, "Hello", 5);

        /* the same unmasking done in two pieces (offset-aware) */
        uint8_t again[] = { 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
        ws_mask(again, 2, h.mask, 0);
        ws_mask(again + 2, 3, h.mask, 2);
        assert_memory_equal(again, "Hello", 5);

        /* fragmented: "Hel" then continuation "lo" */
        static const uint8_t f1[] = { 0x01, 0x03, 0x48, 0x65, 0x6c };
        static const uint8_t f2[] = { 0x80, 0x02, 0x6c, 0x6f };
        assert_int_equal(ws_parse_frame_header(f1, sizeof(f1), &h), 2);
        assert_false(h.fin);
        assert_int_equal(h.opcode, WS_OP_TEXT);
        assert_int_equal(ws_parse_frame_header(f2, sizeof(f2), &h), 2);
        assert_true(h.fin);
        assert_int_equal(h.opcode, WS_OP_CONT);

        /* 256 bytes binary: 16-bit length; 64 KiB: 64-bit length */
        static const uint8_t b256[] = { 0x82, 0x7e, 0x01, 0x00 };
        assert_int_equal(ws_parse_frame_header(b256, sizeof(b256), &h), 4);
        assert_int_equal(h.length, 256);
        static const uint8_t b64k[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0 };
        assert_int_equal(ws_parse_frame_header(b64k, sizeof(b64k), &h), 10);
        assert_int_equal(h.length, 65536);
}

static void test_put_header_lengths(void **state)
{
        uint8_t b[16];
        assert_int_equal(ws_put_frame_header(b, true, WS_OP_BINARY, 125), 2);
        assert_memory_equal(b, "\x82\x7d", 2);
        assert_int_equal(ws_put_frame_header(b, true, WS_OP_BINARY, 126), 4);
        assert_memory_equal(b, "\x82\x7e\x00\x7e", 4);
        assert_int_equal(ws_put_frame_header(b, true, WS_OP_BINARY, 65535), 4);
        assert_memory_equal(b, "\x82\x7e\xff\xff", 4);
        assert_int_equal(ws_put_frame_header(b, false, WS_OP_TEXT, 65536), 10);
        assert_memory_equal(b, "\x01\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
        assert_int_equal(ws_put_frame_header(b, true, WS_OP_CLOSE, 0x123456789aull), 10);
        assert_memory_equal(b, "\x88\x7f\x00\x00\x00\x12\x34\x56\x78\x9a", 10);
}

static void test_parse_incomplete_and_invalid(void **state)
{
        ws_frame_header h;
        static const uint8_t part[] = { 0x82, 0xfe, 0x01 };
        assert_int_equal(ws_parse_frame_header(part, 1, &h), 0);
        assert_int_equal(ws_parse_frame_header(part, 3, &h), 0);
        static const uint8_t top[] = { 0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1 };
        assert_int_equal(ws_parse_frame_header(top, sizeof(top), &h), -EBADMSG);
        static const uint8_t rsv[] = { 0xf2, 0x00 };
        assert_int_equal(ws_parse_frame_header(rsv, sizeof(rsv), &h), 2);
        assert_int_equal(h.rsv, 7);
}

static void test_accept_key(void **state)
{
        char out[29];
        assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
        assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_base64(void **state)
{
        char enc[64];
        assert_int_equal(ws_base64_encode((const uint8_t *)"hello", 5, enc), 8);
        assert_string_equal(enc, "aGVsbG8=");
        ws_base64_encode((const uint8_t *)"", 0, enc);
        assert_string_equal(enc, "");
        ws_b64_decoder d = { 0 };
        uint8_t out[64];
        /* fed in odd pieces */
        int n1 = ws_base64_decode(&d, "aGV", 3, out);
        int n2 = ws_base64_decode(&d, "sbG8=", 5, out + n1);
        assert_int_equal(n1 + n2, 5);
        assert_memory_equal(out, "hello", 5);
        ws_b64_decoder d2 = { 0 };
        assert_int_equal(ws_base64_decode(&d2, "a$", 2, out), -EBADMSG);
        ws_b64_decoder d3 = { 0 };
        assert_int_equal(ws_base64_decode(&d3, "aGVsbG8=aa", 10, out), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rfc_examples),
                cmocka_unit_test(test_put_header_lengths),
                cmocka_unit_test(test_parse_incomplete_and_invalid),
                cmocka_unit_test(test_accept_key),
                cmocka_unit_test(test_base64),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
