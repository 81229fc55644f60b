/* SPDX-License-Identifier: Apache-2.0 */
/* SPDY/3.1 framing (draft-mbelshe-httpbis-spdy-00 / the SPDY/3.1 draft) as
 * the Kubernetes streaming protocols use it: control and data frame headers,
 * the zlib-compressed name/value header blocks with the SPDY/3 dictionary.
 * The connection handler (spdy_serve) is declared in internal.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#define SPDY_VERSION 3
#define SPDY_FRAME_HEADER 8
#define SPDY_MAX_CONTROL_PAYLOAD (64 * 1024)  /* larger control frames: session error */
#define SPDY_MAX_HEADER_BLOCK (64 * 1024)     /* decompressed header block bound */
#define SPDY_MAX_HEADER_PAIRS 256
#define SPDY_INITIAL_WINDOW 65536
#define SPDY_MAX_WINDOW 0x7fffffff

enum {
        SPDY_SYN_STREAM = 1,
        SPDY_SYN_REPLY = 2,
        SPDY_RST_STREAM = 3,
        SPDY_SETTINGS = 4,
        SPDY_PING = 6,
        SPDY_GOAWAY = 7,
        SPDY_HEADERS = 8,
        SPDY_WINDOW_UPDATE = 9,
};

enum {
        SPDY_FLAG_FIN = 0x01,
        SPDY_FLAG_UNIDIRECTIONAL = 0x02,
};

enum { /* RST_STREAM status codes */
        SPDY_PROTOCOL_ERROR = 1,
        SPDY_INVALID_STREAM = 2,
        SPDY_REFUSED_STREAM = 3,
        SPDY_UNSUPPORTED_VERSION = 4,
        SPDY_CANCEL = 5,
        SPDY_INTERNAL_ERROR = 6,
        SPDY_FLOW_CONTROL_ERROR = 7,
        SPDY_STREAM_IN_USE = 8,
        SPDY_STREAM_ALREADY_CLOSED = 9,
        SPDY_FRAME_TOO_LARGE = 11,
};

enum { /* GOAWAY status codes */
        SPDY_GOAWAY_OK = 0,
        SPDY_GOAWAY_PROTOCOL_ERROR = 1,
        SPDY_GOAWAY_INTERNAL_ERROR = 11,
};

enum { SPDY_SETTINGS_INITIAL_WINDOW_SIZE = 7 };

extern const uint8_t spdy_dictionary[1423];

typedef struct spdy_frame_header {
        bool control;
        uint16_t version;   /* control only */
        uint16_t type;      /* control only */
        uint32_t stream_id; /* data only */
        uint8_t flags;
        uint32_t length;    /* 24 bits */
} spdy_frame_header;

void spdy_parse_frame_header(const uint8_t b[SPDY_FRAME_HEADER], spdy_frame_header *ret);
/* Writers return the number of bytes written to b. */
size_t spdy_put_control_header(uint8_t *b, uint16_t type, uint8_t flags, uint32_t length);
size_t spdy_put_data_header(uint8_t *b, uint32_t stream_id, uint8_t flags, uint32_t length);
size_t spdy_put_rst_stream(uint8_t *b, uint32_t stream_id, uint32_t status);      /* 16 bytes */
size_t spdy_put_window_update(uint8_t *b, uint32_t stream_id, uint32_t delta);    /* 16 bytes */
size_t spdy_put_goaway(uint8_t *b, uint32_t last_good_stream_id, uint32_t status); /* 16 bytes */
size_t spdy_put_ping(uint8_t *b, uint32_t id);                                     /* 12 bytes */

/* One direction of a connection's header compression. */
typedef struct spdy_zstream {
        z_stream z;
        bool deflate, init;
} spdy_zstream;

int spdy_zstream_init(spdy_zstream *z, bool deflate);
void spdy_zstream_end(spdy_zstream *z);

typedef struct spdy_header {
        char *name;  /* NUL-terminated */
        char *value; /* NUL-terminated; may contain embedded NULs (value_len) */
        size_t value_len;
} spdy_header;

typedef struct spdy_headers {
        spdy_header *v;
        size_t n;
} spdy_headers;

/* Inflates one compressed name/value block (sync-flushed) and parses it.
 * Fails (-EBADMSG) on corrupt data, -E2BIG beyond the bounds; after a
 * failure the inflate stream is unusable (the connection must go). */
int spdy_headers_decode(spdy_zstream *inf, const uint8_t *in, size_t len, spdy_headers *ret);
/* Value of `name` (case-insensitive), or NULL. */
const char *spdy_headers_get(const spdy_headers *h, const char *name);
void spdy_headers_free(spdy_headers *h);
/* Compresses pairs (name0, value0, name1, value1, ..., NULL) with a sync
 * flush. *ret is malloc'd. */
int spdy_headers_encode(spdy_zstream *def, const char *const *pairs, uint8_t **ret, size_t *ret_len);
