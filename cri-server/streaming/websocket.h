/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 6455 WebSocket as the Kubernetes channel protocols use it: binary
 * messages whose first byte is the channel (0 stdin, 1 stdout, 2 stderr,
 * 3 error, 4 resize, 255 close in v5), or for the base64 variants text
 * messages of an ASCII digit channel followed by base64. The connection
 * handler (ws_serve) is declared in internal.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_MAX_FRAME_PAYLOAD (16ull * 1024 * 1024) /* larger frames: close 1009 */

enum {
        WS_OP_CONT = 0x0,
        WS_OP_TEXT = 0x1,
        WS_OP_BINARY = 0x2,
        WS_OP_CLOSE = 0x8,
        WS_OP_PING = 0x9,
        WS_OP_PONG = 0xa,
};

enum {
        WS_CLOSE_NORMAL = 1000,
        WS_CLOSE_PROTOCOL_ERROR = 1002,
        WS_CLOSE_INVALID_DATA = 1007,
        WS_CLOSE_TOO_BIG = 1009,
};

typedef struct ws_frame_header {
        bool fin;
        uint8_t rsv;      /* the three RSV bits, must be 0 */
        uint8_t opcode;
        bool masked;
        uint64_t length;
        uint8_t mask[4];
        size_t header_len; /* 2..14 */
} ws_frame_header;

/* Parses a frame header from b[0..len). Returns the header length (> 0)
 * when complete, 0 when more bytes are needed, -EBADMSG when malformed
 * (64-bit length with the top bit set, non-minimal lengths are accepted). */
int ws_parse_frame_header(const uint8_t *b, size_t len, ws_frame_header *ret);
/* Server frame header (never masked); returns its length (2, 4 or 10). */
size_t ws_put_frame_header(uint8_t *b, bool fin, uint8_t opcode, uint64_t length);
/* XORs data with the mask, `offset` bytes into the payload. */
void ws_mask(uint8_t *data, size_t n, const uint8_t mask[4], uint64_t offset);
/* Sec-WebSocket-Accept for a client key: 28 characters + NUL. */
int ws_accept_key(const char *key, char out[29]);

/* Standard base64 (with padding). out needs 4*ceil(n/3)+1 bytes. */
size_t ws_base64_encode(const uint8_t *in, size_t n, char *out);
/* Incremental decoder: feed characters, get bytes; rejects invalid input. */
typedef struct ws_b64_decoder {
        uint32_t acc;
        int nbits;
        int pad;
} ws_b64_decoder;
/* Returns the number of bytes written to out (<= 3*n/4 + 3), or -EBADMSG. */
int ws_base64_decode(ws_b64_decoder *d, const char *in, size_t n, uint8_t *out);
