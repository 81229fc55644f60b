/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the SPDY/3.1 connection handler (frame parsing, header
 * decompression, stream bookkeeping, flow control, port-forward pairing)
 * fed hostile bytes after a successful upgrade, plus the header decoder.
 *
 * Build (tests/fuzz/run.sh does this):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -pthread -D_GNU_SOURCE -I. \
 *     tests/fuzz/fuzz-spdy.c cri-server/streaming/{server,spdy,websocket,remotecommand}.c \
 *     common/error.c common/log.c -lz -lcrypto -o fuzz-spdy
 *   ./fuzz-spdy -max_total_time=60 */
#include "tests/fuzz/fuzz-streaming.h"

#include "cri-server/streaming/spdy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        /* the bare decoder, two blocks through one inflate context */
        spdy_zstream inf;
        if (spdy_zstream_init(&inf, false) == 0) {
                spdy_headers h;
                size_t half = size / 2;
                if (spdy_headers_decode(&inf, data + 1, half, &h) == 0) {
                        spdy_headers_free(&h);
                        if (spdy_headers_decode(&inf, data + 1 + half, size - 1 - half, &h) == 0)
                                spdy_headers_free(&h);
                }
                spdy_zstream_end(&inf);
        }
        fuzz_run_connection(data, size, false);
        return 0;
}
