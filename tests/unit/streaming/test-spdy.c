/* SPDX-License-Identifier: Apache-2.0 */
/* Golden-frame tests for the SPDY/3.1 codec. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "cri-server/streaming/spdy.h"

static void test_dictionary(void **state)
{
        assert_int_equal(sizeof(spdy_dictionary), 1423);
        assert_int_equal(adler32(1, spdy_dictionary, sizeof(spdy_dictionary)), 0xe3c6a7c2u);
        assert_memory_equal(spdy_dictionary, "\0\0\0\7options\0\0\0\4head", 19);
        assert_memory_equal(spdy_dictionary + sizeof(spdy_dictionary) - 6, "enq=0.", 6);
}

/* A SYN_STREAM produced by another SPDY implementation (node-spdy's tests):
 * stream 1, headers :method GET, :path /. */
static const uint8_t golden_syn[] = {
        0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xe5, 0x0e, 0x50, 0x7a, 0xb4,
        0x42, 0xa4, 0x5a, 0x77, 0xd7, 0x10, 0x50, 0x06, 0xb3, 0x2a, 0x48, 0x04, 0x97, 0x4d, 0x8c,
        0xfa, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
};

static void test_decode_golden_syn_stream(void **state)
{
        spdy_frame_header h;
        spdy_parse_frame_header(golden_syn, &h);
        assert_true(h.control);
        assert_int_equal(h.version, 3);
        assert_int_equal(h.type, SPDY_SYN_STREAM);
        assert_int_equal(h.flags, 0);
        assert_int_equal(h.length, sizeof(golden_syn) - 8);
        assert_int_equal(golden_syn[11], 1); /* stream id */

        spdy_zstream inf;
        assert_int_equal(spdy_zstream_init(&inf, false), 0);
        spdy_headers hs;
        assert_int_equal(spdy_headers_decode(&inf, golden_syn + 18, h.length - 10, &hs), 0);
        assert_int_equal(hs.n, 2);
        assert_string_equal(spdy_headers_get(&hs, ":method"), "GET");
        assert_string_equal(spdy_headers_get(&hs, ":PATH"), "/");
        assert_null(spdy_headers_get(&hs, "streamtype"));
        spdy_headers_free(&hs);
        spdy_zstream_end(&inf);
}

static void test_control_frames_golden(void **state)
{
        uint8_t b[16];
        static const uint8_t wu[] = { 0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08,
                                      0x00, 0x00, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00 };
        assert_int_equal(spdy_put_window_update(b, 5, 65536), 16);
        assert_memory_equal(b, wu, 16);
        static const uint8_t rst[] = { 0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08,
                                       0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x07 };
        assert_int_equal(spdy_put_rst_stream(b, 3, SPDY_FLOW_CONTROL_ERROR), 16);
        assert_memory_equal(b, rst, 16);
        static const uint8_t ga[] = { 0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08,
                                      0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x01 };
        assert_int_equal(spdy_put_goaway(b, 9, SPDY_GOAWAY_PROTOCOL_ERROR), 16);
        assert_memory_equal(b, ga, 16);
        static const uint8_t ping[] = { 0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01 };
        assert_int_equal(spdy_put_ping(b, 1), 12);
        assert_memory_equal(b, ping, 12);
        /* the top bit of ids and deltas is reserved */
        spdy_put_window_update(b, 0xffffffff, 0xffffffff);
        assert_int_equal(b[8], 0x7f);
        assert_int_equal(b[12], 0x7f);

        spdy_frame_header h;
        spdy_parse_frame_header(wu, &h);
        assert_true(h.control);
        assert_int_equal(h.type, SPDY_WINDOW_UPDATE);
        assert_int_equal(h.length, 8);
}

static void test_data_frame_golden(void **state)
{
        uint8_t b[8];
        static const uint8_t want[] = { 0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x05 };
        assert_int_equal(spdy_put_data_header(b, 3, SPDY_FLAG_FIN, 5), 8);
        assert_memory_equal(b, want, 8);
        spdy_frame_header h;
        static const uint8_t big[] = { 0x80 ^ 0x80, 0x00, 0x01, 0x01, 0x00, 0xff, 0xff, 0xff };
        spdy_parse_frame_header(big, &h);
        assert_false(h.control);
        assert_int_equal(h.stream_id, 0x101);
        assert_int_equal(h.flags, 0);
        assert_int_equal(h.length, 0xffffff);
}

static void test_syn_reply_roundtrip(void **state)
{
        spdy_zstream def, inf;
        assert_int_equal(spdy_zstream_init(&def, true), 0);
        assert_int_equal(spdy_zstream_init(&inf, false), 0);
        for (int i = 0; i < 3; i++) { /* shared compression context across frames */
                const char *pairs[] = { "streamtype", i == 1 ? "stdout" : "error", "port", "8080", NULL };
                uint8_t *blk;
                size_t len;
                assert_int_equal(spdy_headers_encode(&def, pairs, &blk, &len), 0);
                if (i == 0) /* zlib header with FDICT and the SPDY dictionary id */
                        assert_memory_equal(blk + 2, "\xe3\xc6\xa7\xc2", 4);
                spdy_headers h;
                assert_int_equal(spdy_headers_decode(&inf, blk, len, &h), 0);
                assert_int_equal(h.n, 2);
                assert_string_equal(spdy_headers_get(&h, "streamtype"), i == 1 ? "stdout" : "error");
                assert_string_equal(spdy_headers_get(&h, "port"), "8080");
                spdy_headers_free(&h);
                free(blk);
        }
        spdy_zstream_end(&def);
        spdy_zstream_end(&inf);
}

static void test_decode_rejects(void **state)
{
        spdy_zstream inf;
        spdy_headers h;
        /* not zlib */
        assert_int_equal(spdy_zstream_init(&inf, false), 0);
        assert_int_equal(spdy_headers_decode(&inf, (const uint8_t *)"garbage!", 8, &h), -EBADMSG);
        spdy_zstream_end(&inf);

        /* a count that the block cannot hold, and a zero-length name */
        static const uint8_t bad_count[] = { 0, 0, 1, 0 };
        static const uint8_t zero_name[] = { 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 };
        const uint8_t *raws[] = { bad_count, zero_name };
        size_t lens[] = { sizeof(bad_count), sizeof(zero_name) };
        for (int i = 0; i < 2; i++) {
                z_stream z = { 0 };
                assert_int_equal(deflateInit(&z, 6), Z_OK);
                deflateSetDictionary(&z, spdy_dictionary, sizeof(spdy_dictionary));
                uint8_t out[256];
                z.next_in = (Bytef *)raws[i];
                z.avail_in = (uInt)lens[i];
                z.next_out = out;
                z.avail_out = sizeof(out);
                assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
                assert_int_equal(spdy_zstream_init(&inf, false), 0);
                assert_int_equal(spdy_headers_decode(&inf, out, sizeof(out) - z.avail_out, &h), -EBADMSG);
                spdy_zstream_end(&inf);
                deflateEnd(&z);
        }

        /* a block that inflates beyond the bound: a zip bomb of zeros */
        size_t rawlen = SPDY_MAX_HEADER_BLOCK + 100;
        uint8_t *raw = calloc(1, rawlen);
        raw[3] = 1;
        raw[7] = 1;
        raw[8] = 'a';
        raw[9] = 0;
        raw[10] = 1; /* value length 65536+... */
        z_stream z = { 0 };
        deflateInit(&z, 9);
        deflateSetDictionary(&z, spdy_dictionary, sizeof(spdy_dictionary));
        uint8_t *out = malloc(rawlen);
        z.next_in = raw;
        z.avail_in = (uInt)rawlen;
        z.next_out = out;
        z.avail_out = (uInt)rawlen;
        assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
        assert_true(rawlen - z.avail_out < 2000);
        assert_int_equal(spdy_zstream_init(&inf, false), 0);
        assert_int_equal(spdy_headers_decode(&inf, out, rawlen - z.avail_out, &h), -E2BIG);
        spdy_zstream_end(&inf);
        deflateEnd(&z);
        free(raw);
        free(out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dictionary),
                cmocka_unit_test(test_decode_golden_syn_stream),
                cmocka_unit_test(test_control_frames_golden),
                cmocka_unit_test(test_data_frame_golden),
                cmocka_unit_test(test_syn_reply_roundtrip),
                cmocka_unit_test(test_decode_rejects),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
