/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the WebSocket connection handler (frame headers,
 * masking, fragmentation, control frames, channel and base64 decoding,
 * v5 close, port-forward channels) fed hostile bytes after the handshake.
 *
 * Build (tests/fuzz/run.sh does this):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -pthread -D_GNU_SOURCE -I. \
 *     tests/fuzz/fuzz-websocket.c cri-server/streaming/{server,spdy,websocket,remotecommand}.c \
 *     common/error.c common/log.c -lz -lcrypto -o fuzz-websocket
 *   ./fuzz-websocket -max_total_time=60 */
#include "tests/fuzz/fuzz-streaming.h"

#include "cri-server/streaming/websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        ws_frame_header h;
        (void)ws_parse_frame_header(data, size, &h);
        ws_b64_decoder d = { 0 };
        uint8_t out[256];
        (void)ws_base64_decode(&d, (const char *)data, size < 300 ? size : 300, out);
        fuzz_run_connection(data, size, true);
        return 0;
}
