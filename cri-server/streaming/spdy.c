/* SPDX-License-Identifier: Apache-2.0 */
/* SPDY/3.1 for the Kubernetes remotecommand and portforward protocols:
 * the frame codec, and a connection handler with per-stream and session
 * flow-control windows.
 *
 * Flow control and Go's spdystream: spdystream (the kubelet's and
 * kubectl's SPDY library) neither sends nor honours WINDOW_UPDATE. So our
 * sender only blocks on the peer's windows once the peer has shown that it
 * speaks flow control (it sent SETTINGS or WINDOW_UPDATE); before that TCP
 * provides the back-pressure. Likewise a peer exceeding our receive window is
 * reset with FLOW_CONTROL_ERROR only if it is flow-control aware; an unaware
 * peer is simply not read from while our buffers are full. */
#include "cri-server/streaming/spdy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/streaming/internal.h"
#include "cri-server/streaming/remotecommand.h"

/* The SPDY/3 header compression dictionary (the draft's section 2.6.10.1),
 * 1423 bytes, adler32 0xe3c6a7c2. */
const uint8_t spdy_dictionary[1423] = {
        0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00,
        0x00, 0x00, 0x04, 0x68, 0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70,
        0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x03, 0x70, 0x75, 0x74, 0x00, 0x00,
        0x00, 0x06, 0x64, 0x65, 0x6c, 0x65, 0x74, 0x65, 0x00, 0x00, 0x00, 0x05,
        0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00, 0x06, 0x61, 0x63, 0x63,
        0x65, 0x70, 0x74, 0x00, 0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70,
        0x74, 0x2d, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x00, 0x00, 0x00,
        0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f,
        0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65,
        0x70, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00,
        0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x72, 0x61,
        0x6e, 0x67, 0x65, 0x73, 0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00,
        0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c, 0x6f, 0x77, 0x00, 0x00, 0x00, 0x0d,
        0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f,
        0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63, 0x68, 0x65, 0x2d, 0x63,
        0x6f, 0x6e, 0x74, 0x72, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f,
        0x6e, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c,
        0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x62, 0x61, 0x73, 0x65,
        0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d,
        0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10,
        0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67,
        0x75, 0x61, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74,
        0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65, 0x6e, 0x67, 0x74, 0x68, 0x00, 0x00,
        0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x6f,
        0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0b, 0x63, 0x6f,
        0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00,
        0x0d, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x72, 0x61, 0x6e,
        0x67, 0x65, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
        0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00, 0x00, 0x04, 0x64, 0x61,
        0x74, 0x65, 0x00, 0x00, 0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00,
        0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74, 0x00, 0x00, 0x00, 0x07,
        0x65, 0x78, 0x70, 0x69, 0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66,
        0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73, 0x74, 0x00,
        0x00, 0x00, 0x08, 0x69, 0x66, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00,
        0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69,
        0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d,
        0x69, 0x66, 0x2d, 0x6e, 0x6f, 0x6e, 0x65, 0x2d, 0x6d, 0x61, 0x74, 0x63,
        0x68, 0x00, 0x00, 0x00, 0x08, 0x69, 0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67,
        0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d, 0x75, 0x6e, 0x6d, 0x6f,
        0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65,
        0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74, 0x2d, 0x6d, 0x6f, 0x64,
        0x69, 0x66, 0x69, 0x65, 0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63,
        0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x6d, 0x61, 0x78,
        0x2d, 0x66, 0x6f, 0x72, 0x77, 0x61, 0x72, 0x64, 0x73, 0x00, 0x00, 0x00,
        0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00, 0x00, 0x00, 0x12, 0x70,
        0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74,
        0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00, 0x13, 0x70, 0x72, 0x6f,
        0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61,
        0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05, 0x72, 0x61, 0x6e, 0x67,
        0x65, 0x00, 0x00, 0x00, 0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72,
        0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72, 0x79, 0x2d, 0x61, 0x66,
        0x74, 0x65, 0x72, 0x00, 0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65,
        0x72, 0x00, 0x00, 0x00, 0x02, 0x74, 0x65, 0x00, 0x00, 0x00, 0x07, 0x74,
        0x72, 0x61, 0x69, 0x6c, 0x65, 0x72, 0x00, 0x00, 0x00, 0x11, 0x74, 0x72,
        0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64,
        0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61,
        0x64, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x61,
        0x67, 0x65, 0x6e, 0x74, 0x00, 0x00, 0x00, 0x04, 0x76, 0x61, 0x72, 0x79,
        0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00, 0x00, 0x00, 0x07, 0x77,
        0x61, 0x72, 0x6e, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77,
        0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61,
        0x74, 0x65, 0x00, 0x00, 0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64,
        0x00, 0x00, 0x00, 0x03, 0x67, 0x65, 0x74, 0x00, 0x00, 0x00, 0x06, 0x73,
        0x74, 0x61, 0x74, 0x75, 0x73, 0x00, 0x00, 0x00, 0x06, 0x32, 0x30, 0x30,
        0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76, 0x65, 0x72, 0x73, 0x69,
        0x6f, 0x6e, 0x00, 0x00, 0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31,
        0x2e, 0x31, 0x00, 0x00, 0x00, 0x03, 0x75, 0x72, 0x6c, 0x00, 0x00, 0x00,
        0x06, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x00, 0x00, 0x00, 0x0a, 0x73,
        0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69, 0x65, 0x00, 0x00, 0x00,
        0x0a, 0x6b, 0x65, 0x65, 0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00,
        0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69, 0x6e, 0x31, 0x30, 0x30,
        0x31, 0x30, 0x31, 0x32, 0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35,
        0x32, 0x30, 0x36, 0x33, 0x30, 0x30, 0x33, 0x30, 0x32, 0x33, 0x30, 0x33,
        0x33, 0x30, 0x34, 0x33, 0x30, 0x35, 0x33, 0x30, 0x36, 0x33, 0x30, 0x37,
        0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30, 0x36, 0x34, 0x30, 0x37,
        0x34, 0x30, 0x38, 0x34, 0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31,
        0x34, 0x31, 0x32, 0x34, 0x31, 0x33, 0x34, 0x31, 0x34, 0x34, 0x31, 0x35,
        0x34, 0x31, 0x36, 0x34, 0x31, 0x37, 0x35, 0x30, 0x32, 0x35, 0x30, 0x34,
        0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e, 0x6f, 0x6e, 0x2d, 0x41,
        0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65,
        0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x69, 0x6f, 0x6e,
        0x32, 0x30, 0x34, 0x20, 0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65,
        0x6e, 0x74, 0x33, 0x30, 0x31, 0x20, 0x4d, 0x6f, 0x76, 0x65, 0x64, 0x20,
        0x50, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74, 0x6c, 0x79, 0x34,
        0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52, 0x65, 0x71, 0x75, 0x65,
        0x73, 0x74, 0x34, 0x30, 0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68,
        0x6f, 0x72, 0x69, 0x7a, 0x65, 0x64, 0x34, 0x30, 0x33, 0x20, 0x46, 0x6f,
        0x72, 0x62, 0x69, 0x64, 0x64, 0x65, 0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e,
        0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64, 0x35, 0x30, 0x30, 0x20,
        0x49, 0x6e, 0x74, 0x65, 0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72,
        0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f, 0x72, 0x35, 0x30, 0x31,
        0x20, 0x4e, 0x6f, 0x74, 0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65,
        0x6e, 0x74, 0x65, 0x64, 0x35, 0x30, 0x33, 0x20, 0x53, 0x65, 0x72, 0x76,
        0x69, 0x63, 0x65, 0x20, 0x55, 0x6e, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61,
        0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46, 0x65, 0x62, 0x20, 0x4d,
        0x61, 0x72, 0x20, 0x41, 0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a,
        0x75, 0x6e, 0x20, 0x4a, 0x75, 0x6c, 0x20, 0x41, 0x75, 0x67, 0x20, 0x53,
        0x65, 0x70, 0x74, 0x20, 0x4f, 0x63, 0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20,
        0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30, 0x30, 0x3a, 0x30, 0x30,
        0x20, 0x4d, 0x6f, 0x6e, 0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57,
        0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c, 0x20, 0x46, 0x72, 0x69,
        0x2c, 0x20, 0x53, 0x61, 0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20,
        0x47, 0x4d, 0x54, 0x63, 0x68, 0x75, 0x6e, 0x6b, 0x65, 0x64, 0x2c, 0x74,
        0x65, 0x78, 0x74, 0x2f, 0x68, 0x74, 0x6d, 0x6c, 0x2c, 0x69, 0x6d, 0x61,
        0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65,
        0x2f, 0x6a, 0x70, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67,
        0x69, 0x66, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69,
        0x6f, 0x6e, 0x2f, 0x78, 0x6d, 0x6c, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
        0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x68, 0x74, 0x6d, 0x6c,
        0x2b, 0x78, 0x6d, 0x6c, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c,
        0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x6a, 0x61, 0x76,
        0x61, 0x73, 0x63, 0x72, 0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c,
        0x69, 0x63, 0x70, 0x72, 0x69, 0x76, 0x61, 0x74, 0x65, 0x6d, 0x61, 0x78,
        0x2d, 0x61, 0x67, 0x65, 0x3d, 0x67, 0x7a, 0x69, 0x70, 0x2c, 0x64, 0x65,
        0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64, 0x63, 0x68, 0x63, 0x68,
        0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63,
        0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x69, 0x73, 0x6f, 0x2d, 0x38,
        0x38, 0x35, 0x39, 0x2d, 0x31, 0x2c, 0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a,
        0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e,
};

static void put32(uint8_t *b, uint32_t v)
{
        b[0] = (uint8_t)(v >> 24);
        b[1] = (uint8_t)(v >> 16);
        b[2] = (uint8_t)(v >> 8);
        b[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *b)
{
        return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

void spdy_parse_frame_header(const uint8_t b[SPDY_FRAME_HEADER], spdy_frame_header *h)
{
        memset(h, 0, sizeof(*h));
        h->control = (b[0] & 0x80) != 0;
        if (h->control) {
                h->version = (uint16_t)(((b[0] & 0x7f) << 8) | b[1]);
                h->type = (uint16_t)((b[2] << 8) | b[3]);
        } else {
                h->stream_id = get32(b) & 0x7fffffff;
        }
        h->flags = b[4];
        h->length = get32(b + 4) & 0xffffff;
}

size_t spdy_put_control_header(uint8_t *b, uint16_t type, uint8_t flags, uint32_t length)
{
        b[0] = 0x80;
        b[1] = SPDY_VERSION;
        b[2] = (uint8_t)(type >> 8);
        b[3] = (uint8_t)type;
        put32(b + 4, length & 0xffffff);
        b[4] = flags;
        return 8;
}

size_t spdy_put_data_header(uint8_t *b, uint32_t stream_id, uint8_t flags, uint32_t length)
{
        put32(b, stream_id & 0x7fffffff);
        put32(b + 4, length & 0xffffff);
        b[4] = flags;
        return 8;
}

static size_t put_two(uint8_t *b, uint16_t type, uint32_t a, uint32_t c)
{
        spdy_put_control_header(b, type, 0, 8);
        put32(b + 8, a & 0x7fffffff);
        put32(b + 12, c);
        return 16;
}

size_t spdy_put_rst_stream(uint8_t *b, uint32_t sid, uint32_t status) { return put_two(b, SPDY_RST_STREAM, sid, status); }
size_t spdy_put_window_update(uint8_t *b, uint32_t sid, uint32_t delta)
{
        return put_two(b, SPDY_WINDOW_UPDATE, sid, delta & 0x7fffffff);
}
size_t spdy_put_goaway(uint8_t *b, uint32_t last, uint32_t status) { return put_two(b, SPDY_GOAWAY, last, status); }

size_t spdy_put_ping(uint8_t *b, uint32_t id)
{
        spdy_put_control_header(b, SPDY_PING, 0, 4);
        put32(b + 8, id);
        return 12;
}

/* ---------------- header blocks ---------------- */

int spdy_zstream_init(spdy_zstream *z, bool deflate)
{
        memset(z, 0, sizeof(*z));
        z->deflate = deflate;
        int r;
        if (deflate) {
                r = deflateInit(&z->z, Z_DEFAULT_COMPRESSION);
                if (r == Z_OK)
                        r = deflateSetDictionary(&z->z, spdy_dictionary, sizeof(spdy_dictionary));
        } else {
                r = inflateInit(&z->z);
        }
        if (r != Z_OK)
                return -ENOMEM;
        z->init = true;
        return 0;
}

void spdy_zstream_end(spdy_zstream *z)
{
        if (!z->init)
                return;
        if (z->deflate)
                deflateEnd(&z->z);
        else
                inflateEnd(&z->z);
        z->init = false;
}

void spdy_headers_free(spdy_headers *h)
{
        if (!h)
                return;
        for (size_t i = 0; i < h->n; i++) {
                free(h->v[i].name);
                free(h->v[i].value);
        }
        free(h->v);
        h->v = NULL;
        h->n = 0;
}

const char *spdy_headers_get(const spdy_headers *h, const char *name)
{
        for (size_t i = 0; i < h->n; i++)
                if (strcasecmp(h->v[i].name, name) == 0)
                        return h->v[i].value;
        return NULL;
}

static int inflate_block(spdy_zstream *inf, const uint8_t *in, size_t len, uint8_t *out, size_t *ret_len)
{
        z_stream *z = &inf->z;
        z->next_in = (Bytef *)in;
        z->avail_in = (uInt)len;
        z->next_out = out;
        z->avail_out = SPDY_MAX_HEADER_BLOCK;
        for (;;) {
                int r = inflate(z, Z_SYNC_FLUSH);
                if (r == Z_NEED_DICT) {
                        if (inflateSetDictionary(z, spdy_dictionary, sizeof(spdy_dictionary)) != Z_OK)
                                return -EBADMSG;
                        continue;
                }
                if (r == Z_STREAM_END)
                        return -EBADMSG; /* SPDY never ends the stream */
                if (r != Z_OK && r != Z_BUF_ERROR)
                        return -EBADMSG;
                if (z->avail_in == 0)
                        break;
                if (z->avail_out == 0)
                        return -E2BIG;
                if (r == Z_BUF_ERROR)
                        return -EBADMSG;
        }
        if (z->avail_out == 0) {
                /* exactly full: there may be more pending output */
                uint8_t probe;
                z->next_out = &probe;
                z->avail_out = 1;
                int r = inflate(z, Z_SYNC_FLUSH);
                if (z->avail_out == 0 || (r != Z_OK && r != Z_BUF_ERROR))
                        return -E2BIG;
                z->avail_out = 0;
        }
        *ret_len = SPDY_MAX_HEADER_BLOCK - z->avail_out;
        return 0;
}

int spdy_headers_decode(spdy_zstream *inf, const uint8_t *in, size_t len, spdy_headers *ret)
{
        spdy_headers h = { 0 };
        if (len == 0) {
                *ret = h;
                return 0;
        }
        _cleanup_free_ uint8_t *out = malloc(SPDY_MAX_HEADER_BLOCK);
        if (!out)
                return -ENOMEM;
        size_t n = 0;
        int r = inflate_block(inf, in, len, out, &n);
        if (r < 0)
                return r;
        if (n < 4)
                return -EBADMSG;
        uint32_t count = get32(out);
        if (count > SPDY_MAX_HEADER_PAIRS || count > (n - 4) / 8)
                return -EBADMSG;
        h.v = calloc(count ? count : 1, sizeof(spdy_header));
        if (!h.v)
                return -ENOMEM;
        size_t off = 4;
        for (uint32_t i = 0; i < count; i++) {
                uint32_t l[2];
                const uint8_t *p[2];
                for (int k = 0; k < 2; k++) {
                        if (n - off < 4) {
                                spdy_headers_free(&h);
                                return -EBADMSG;
                        }
                        l[k] = get32(out + off);
                        off += 4;
                        if (l[k] > n - off || (k == 0 && l[k] == 0)) {
                                spdy_headers_free(&h);
                                return -EBADMSG;
                        }
                        p[k] = out + off;
                        off += l[k];
                }
                spdy_header *e = &h.v[h.n];
                e->name = strndup((const char *)p[0], l[0]);
                e->value = malloc(l[1] + 1);
                if (!e->name || !e->value) {
                        free(e->name);
                        free(e->value);
                        spdy_headers_free(&h);
                        return -ENOMEM;
                }
                memcpy(e->value, p[1], l[1]);
                e->value[l[1]] = 0;
                e->value_len = l[1];
                h.n++;
                if (strlen(e->name) != l[0]) { /* NUL in a name */
                        spdy_headers_free(&h);
                        return -EBADMSG;
                }
        }
        *ret = h;
        return 0;
}

int spdy_headers_encode(spdy_zstream *def, const char *const *pairs, uint8_t **ret, size_t *ret_len)
{
        size_t raw_len = 4, count = 0;
        for (const char *const *p = pairs; p[0] && p[1]; p += 2) {
                raw_len += 8 + strlen(p[0]) + strlen(p[1]);
                count++;
        }
        _cleanup_free_ uint8_t *raw = malloc(raw_len);
        if (!raw)
                return -ENOMEM;
        put32(raw, (uint32_t)count);
        size_t off = 4;
        for (const char *const *p = pairs; p[0] && p[1]; p += 2) {
                for (int k = 0; k < 2; k++) {
                        size_t l = strlen(p[k]);
                        put32(raw + off, (uint32_t)l);
                        memcpy(raw + off + 4, p[k], l);
                        off += 4 + l;
                }
        }
        size_t cap = deflateBound(&def->z, raw_len) + 16;
        uint8_t *out = malloc(cap);
        if (!out)
                return -ENOMEM;
        def->z.next_in = raw;
        def->z.avail_in = (uInt)raw_len;
        def->z.next_out = out;
        def->z.avail_out = (uInt)cap;
        int r = deflate(&def->z, Z_SYNC_FLUSH);
        if (r != Z_OK || def->z.avail_in != 0) {
                free(out);
                return -EIO;
        }
        *ret = out;
        *ret_len = cap - def->z.avail_out;
        return 0;
}

/* ================= the connection handler ================= */

#define MAX_STREAMS 512
#define MAX_PAIRS 128
#define DATA_CHUNK (64 * 1024)

enum { PF_DATA = 100, PF_ERROR = 101 };

typedef struct pf_pair pf_pair;

typedef struct sstream {
        uint32_t id;
        int type;            /* ST_CH_* or PF_* ; -1 unknown */
        bool fin_in, fin_out, reset;
        int64_t send_window; /* how much the peer lets us send */
        int64_t recv_window; /* how much we still accept */
        pf_pair *pair;
} sstream;

struct pf_pair {
        char requestid[64];
        char port_str[16];
        sstream *data, *error;
        int fd;
        pthread_t thread;
        bool thread_started, started, done;
        struct spdy_conn_s *sc;
};

typedef struct spdy_conn_s {
        st_transport t; /* first */
        st_conn *c;
        st_ticket *tk;
        spdy_zstream inf, def; /* def under c->wlock */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        sstream *streams[MAX_STREAMS];
        size_t n_streams;
        sstream *ch[ST_CH_MAX];
        uint32_t last_client_id;
        bool aware;
        int64_t session_send_window;
        int64_t initial_send_window;
        int64_t session_recv_consumed;
        rc_session *rc;
        bool rc_failed;
        pf_pair *pairs[MAX_PAIRS];
        size_t n_pairs;
} spdy_conn;

static int send_control(spdy_conn *sc, const uint8_t *b, size_t n)
{
        struct iovec iov = { (void *)b, n };
        return st_writev_all(sc->c, &iov, 1);
}

static void send_rst(spdy_conn *sc, uint32_t sid, uint32_t status)
{
        uint8_t b[16];
        send_control(sc, b, spdy_put_rst_stream(b, sid, status));
}

static void send_goaway(spdy_conn *sc, uint32_t status)
{
        uint8_t b[16];
        send_control(sc, b, spdy_put_goaway(b, sc->last_client_id, status));
}

static void send_window_update(spdy_conn *sc, uint32_t sid, uint32_t delta)
{
        uint8_t b[16];
        send_control(sc, b, spdy_put_window_update(b, sid, delta));
}

static int send_syn_reply(spdy_conn *sc, uint32_t sid)
{
        static const char *const none[] = { NULL };
        pthread_mutex_lock(&sc->c->wlock);
        uint8_t *block = NULL;
        size_t blen = 0;
        int r = spdy_headers_encode(&sc->def, none, &block, &blen);
        if (r == 0) {
                uint8_t h[12];
                spdy_put_control_header(h, SPDY_SYN_REPLY, 0, (uint32_t)(4 + blen));
                put32(h + 8, sid & 0x7fffffff);
                struct iovec iov[2] = { { h, 12 }, { block, blen } };
                r = st_write_locked(sc->c, iov, 2);
        }
        pthread_mutex_unlock(&sc->c->wlock);
        free(block);
        return r;
}

static sstream *find_stream(spdy_conn *sc, uint32_t id)
{
        for (size_t i = 0; i < sc->n_streams; i++)
                if (sc->streams[i]->id == id)
                        return sc->streams[i];
        return NULL;
}

/* Sends len bytes on stream s as DATA frames, honouring windows for aware peers. */
static int send_data(spdy_conn *sc, sstream *s, const uint8_t *p, size_t len, bool fin)
{
        do {
                pthread_mutex_lock(&sc->lock);
                for (;;) {
                        if (atomic_load(&sc->c->dead) || s->reset || s->fin_out) {
                                pthread_mutex_unlock(&sc->lock);
                                return -EPIPE;
                        }
                        if (!sc->aware || len == 0 || (s->send_window > 0 && sc->session_send_window > 0))
                                break;
                        pthread_cond_wait(&sc->cond, &sc->lock);
                }
                size_t n = CC_MIN(len, (size_t)DATA_CHUNK);
                if (sc->aware && len > 0) {
                        n = (size_t)CC_MIN((int64_t)n, s->send_window);
                        n = (size_t)CC_MIN((int64_t)n, sc->session_send_window);
                }
                s->send_window -= (int64_t)n;
                sc->session_send_window -= (int64_t)n;
                bool last = fin && n == len;
                if (last)
                        s->fin_out = true;
                pthread_mutex_unlock(&sc->lock);
                uint8_t h[8];
                spdy_put_data_header(h, s->id, last ? SPDY_FLAG_FIN : 0, (uint32_t)n);
                struct iovec iov[2] = { { h, 8 }, { (void *)p, n } };
                int r = st_writev_all(sc->c, iov, 2);
                if (r < 0)
                        return r;
                if (n) {
                        p += n;
                        len -= n;
                }
        } while (len > 0);
        return 0;
}

/* ---- st_transport ops (exec/attach) ---- */

static int t_send(st_transport *t, int ch, const void *buf, size_t len)
{
        spdy_conn *sc = (spdy_conn *)t;
        sstream *s = (unsigned)ch < ST_CH_MAX ? sc->ch[ch] : NULL;
        if (!s)
                return atomic_load(&sc->c->dead) ? -EPIPE : 0; /* channel not opened by the client */
        if (len == 0)
                return 0;
        return send_data(sc, s, buf, len, false);
}

static int t_close_channel(st_transport *t, int ch)
{
        spdy_conn *sc = (spdy_conn *)t;
        sstream *s = (unsigned)ch < ST_CH_MAX ? sc->ch[ch] : NULL;
        if (!s)
                return 0;
        pthread_mutex_lock(&sc->lock);
        bool skip = s->fin_out || s->reset;
        pthread_mutex_unlock(&sc->lock);
        return skip ? 0 : send_data(sc, s, NULL, 0, true);
}

static void credit_stream(spdy_conn *sc, sstream *s, size_t n)
{
        if (n == 0 || !s)
                return;
        pthread_mutex_lock(&sc->lock);
        s->recv_window += (int64_t)n;
        bool send = !s->fin_in && !s->reset;
        pthread_mutex_unlock(&sc->lock);
        if (send)
                send_window_update(sc, s->id, (uint32_t)n);
}

static void t_credit(st_transport *t, int ch, size_t n)
{
        spdy_conn *sc = (spdy_conn *)t;
        credit_stream(sc, (unsigned)ch < ST_CH_MAX ? sc->ch[ch] : NULL, n);
}

static void t_finish(st_transport *t)
{
        spdy_conn *sc = (spdy_conn *)t;
        send_goaway(sc, SPDY_GOAWAY_OK);
        sc->c->linger_ms = 5000;
        shutdown(sc->c->fd, SHUT_WR);
}

static const st_transport_ops spdy_transport_ops = {
        .send = t_send,
        .close_channel = t_close_channel,
        .credit = t_credit,
        .finish = t_finish,
};

/* ---- port-forward pairs ---- */

static void *pf_copy_thread(void *arg)
{
        pf_pair *p = arg;
        spdy_conn *sc = p->sc;
        _cleanup_free_ uint8_t *buf = malloc(DATA_CHUNK);
        while (buf) {
                ssize_t n = read(p->fd, buf, DATA_CHUNK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (send_data(sc, p->data, buf, (size_t)n, false) < 0)
                        break;
        }
        pthread_mutex_lock(&sc->lock);
        bool dfin = p->data->fin_out || p->data->reset, efin = p->error->fin_out || p->error->reset;
        pthread_mutex_unlock(&sc->lock);
        if (!dfin)
                send_data(sc, p->data, NULL, 0, true);
        if (!efin)
                send_data(sc, p->error, NULL, 0, true);
        pthread_mutex_lock(&sc->lock);
        p->done = true;
        pthread_mutex_unlock(&sc->lock);
        return NULL;
}

static void pf_start(spdy_conn *sc, pf_pair *p)
{
        p->started = true;
        char *end = NULL;
        unsigned long port = strtoul(p->port_str, &end, 10);
        _cleanup_error_ cc_error *err = NULL;
        char msg[512];
        if (!p->port_str[0] || *end || port == 0 || port > 65535) {
                snprintf(msg, sizeof(msg), "invalid port: '%s'", p->port_str);
        } else {
                int fd = sc->tk->ops->port_connect ? sc->tk->ops->port_connect(sc->tk->backend_data, sc->tk->payload, (uint16_t)port, &err)
                                                   : cc_error_set(&err, -EOPNOTSUPP, "port forwarding is not supported");
                if (fd >= 0) {
                        p->fd = fd;
                        if (st_thread_create(&p->thread, pf_copy_thread, p) == 0) {
                                p->thread_started = true;
                                return;
                        }
                        cc_error_set(&err, -EAGAIN, "out of threads");
                }
                snprintf(msg, sizeof(msg), "error forwarding port %lu to pod: %s", port, err ? err->msg : "failed");
        }
        send_data(sc, p->error, (const uint8_t *)msg, strlen(msg), true);
        send_data(sc, p->data, NULL, 0, true);
        p->done = true;
}

static void pf_pair_free(spdy_conn *sc, pf_pair *p)
{
        if (p->fd >= 0)
                shutdown(p->fd, SHUT_RDWR);
        if (p->thread_started)
                pthread_join(p->thread, NULL);
        if (p->fd >= 0)
                close(p->fd);
        free(p);
}

static void remove_stream(spdy_conn *sc, sstream *s)
{
        pthread_mutex_lock(&sc->lock);
        for (size_t i = 0; i < sc->n_streams; i++)
                if (sc->streams[i] == s) {
                        sc->streams[i] = sc->streams[--sc->n_streams];
                        break;
                }
        pthread_mutex_unlock(&sc->lock);
        free(s);
}

/* Frees pairs whose both directions are over. */
static void pf_reap(spdy_conn *sc)
{
        for (size_t i = 0; i < sc->n_pairs;) {
                pf_pair *p = sc->pairs[i];
                pthread_mutex_lock(&sc->lock);
                bool over = p->done && (!p->data || p->data->fin_in || p->data->reset);
                pthread_mutex_unlock(&sc->lock);
                if (!over) {
                        i++;
                        continue;
                }
                sc->pairs[i] = sc->pairs[--sc->n_pairs];
                sstream *d = p->data, *e = p->error;
                pf_pair_free(sc, p);
                if (d)
                        remove_stream(sc, d);
                if (e)
                        remove_stream(sc, e);
        }
}

static int pf_attach(spdy_conn *sc, sstream *s, const spdy_headers *h)
{
        const char *rid = spdy_headers_get(h, "requestid");
        const char *port = spdy_headers_get(h, "port");
        char buf[32];
        if (!rid || !*rid) {
                /* clients without the header: the error stream's id names the
                 * request, its data stream follows it (id + 2) */
                snprintf(buf, sizeof(buf), "%u", s->type == PF_ERROR ? s->id : s->id - 2);
                rid = buf;
        }
        if (strlen(rid) >= sizeof(((pf_pair *)0)->requestid) || (port && strlen(port) >= 16))
                return -EINVAL;
        pf_pair *p = NULL;
        for (size_t i = 0; i < sc->n_pairs; i++)
                if (strcmp(sc->pairs[i]->requestid, rid) == 0)
                        p = sc->pairs[i];
        if (!p) {
                pf_reap(sc);
                if (sc->n_pairs >= MAX_PAIRS)
                        return -ENOSPC;
                p = calloc(1, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                p->fd = -1;
                p->sc = sc;
                strcpy(p->requestid, rid);
                sc->pairs[sc->n_pairs++] = p;
        }
        if ((s->type == PF_DATA && p->data) || (s->type == PF_ERROR && p->error))
                return -EEXIST;
        if (port && !p->port_str[0])
                strcpy(p->port_str, port);
        if (s->type == PF_DATA)
                p->data = s;
        else
                p->error = s;
        s->pair = p;
        if (p->data && p->error && !p->started)
                pf_start(sc, p);
        return 0;
}

/* ---- exec/attach stream accounting ---- */

static int expected_streams(spdy_conn *sc)
{
        const streaming_opts *o = &sc->tk->opts;
        int n = 1; /* error */
        n += o->stdin_;
        n += o->stdout_;
        n += o->stderr_ && !o->tty;
        n += o->tty && sc->t.version >= 3;
        return n;
}

static void maybe_start(spdy_conn *sc, bool force)
{
        if (sc->rc || sc->rc_failed || sc->tk->kind == STREAMING_PORTFORWARD)
                return;
        int have = 0;
        for (int i = 0; i < ST_CH_MAX; i++)
                have += sc->ch[i] != NULL;
        if (!force && have < expected_streams(sc))
                return;
        sc->c->linger_ms = 0;
        if (rc_session_start(sc->tk, &sc->t, &sc->rc) < 0)
                sc->rc_failed = true;
}

static int stream_type(const char *t, streaming_kind kind)
{
        static const char *const names[ST_CH_MAX] = { "stdin", "stdout", "stderr", "error", "resize" };
        if (!t)
                return -1;
        if (kind == STREAMING_PORTFORWARD) {
                if (strcasecmp(t, "data") == 0)
                        return PF_DATA;
                if (strcasecmp(t, "error") == 0)
                        return PF_ERROR;
                return -1;
        }
        for (int i = 0; i < ST_CH_MAX; i++)
                if (strcasecmp(t, names[i]) == 0)
                        return i;
        return -1;
}

/* ---- frame handlers: return <0 for a session error (GOAWAY + close) ---- */

static int on_syn_stream(spdy_conn *sc, const spdy_frame_header *fh, const uint8_t *p)
{
        if (fh->length < 10)
                return -EBADMSG;
        uint32_t sid = get32(p) & 0x7fffffff;
        spdy_headers h = { 0 };
        int r = spdy_headers_decode(&sc->inf, p + 10, fh->length - 10, &h);
        if (r < 0)
                return r; /* compression state lost: session error */
        if (sid == 0 || (sid & 1) == 0 || sid <= sc->last_client_id) {
                spdy_headers_free(&h);
                return -EPROTO;
        }
        sc->last_client_id = sid;
        int type = stream_type(spdy_headers_get(&h, "streamtype"), sc->tk->kind);
        if (type < 0 || (type < ST_CH_MAX && sc->ch[type]) || sc->n_streams >= MAX_STREAMS) {
                spdy_headers_free(&h);
                send_rst(sc, sid, type < 0 ? SPDY_PROTOCOL_ERROR : SPDY_REFUSED_STREAM);
                return 0;
        }
        sstream *s = calloc(1, sizeof(*s));
        if (!s) {
                spdy_headers_free(&h);
                send_rst(sc, sid, SPDY_INTERNAL_ERROR);
                return 0;
        }
        s->id = sid;
        s->type = type;
        s->send_window = sc->initial_send_window;
        s->recv_window = SPDY_INITIAL_WINDOW;
        s->fin_in = (fh->flags & SPDY_FLAG_FIN) != 0;
        s->fin_out = (fh->flags & SPDY_FLAG_UNIDIRECTIONAL) != 0;
        pthread_mutex_lock(&sc->lock);
        sc->streams[sc->n_streams++] = s;
        pthread_mutex_unlock(&sc->lock);
        if (send_syn_reply(sc, sid) < 0) {
                spdy_headers_free(&h);
                return -EPIPE;
        }
        if (type < ST_CH_MAX) {
                sc->ch[type] = s;
                maybe_start(sc, false);
                if (s->fin_in && sc->rc)
                        rc_session_input_eof(sc->rc, type);
        } else if (pf_attach(sc, s, &h) < 0) {
                send_rst(sc, sid, SPDY_REFUSED_STREAM);
                pthread_mutex_lock(&sc->lock);
                s->reset = true;
                pthread_mutex_unlock(&sc->lock);
        }
        spdy_headers_free(&h);
        return 0;
}

static void peer_reset(spdy_conn *sc, sstream *s)
{
        pthread_mutex_lock(&sc->lock);
        s->reset = true;
        pthread_cond_broadcast(&sc->cond);
        pthread_mutex_unlock(&sc->lock);
        if (s->type < ST_CH_MAX) {
                if (sc->rc && (s->type == ST_CH_STDOUT || s->type == ST_CH_STDERR || s->type == ST_CH_ERROR))
                        rc_session_client_gone(sc->rc);
                else if (sc->rc && s->type == ST_CH_STDIN)
                        rc_session_input_eof(sc->rc, ST_CH_STDIN);
        } else if (s->pair && s->pair->fd >= 0) {
                shutdown(s->pair->fd, SHUT_RDWR);
        }
}

static int on_control(spdy_conn *sc, const spdy_frame_header *fh, const uint8_t *p)
{
        switch (fh->type) {
        case SPDY_SYN_STREAM:
                return on_syn_stream(sc, fh, p);
        case SPDY_SYN_REPLY:
        case SPDY_HEADERS: {
                /* clients do not reply to us (we open no streams), but keep the
                 * inflate state in step */
                if (fh->length < 4)
                        return -EBADMSG;
                spdy_headers h;
                int r = spdy_headers_decode(&sc->inf, p + 4, fh->length - 4, &h);
                if (r < 0)
                        return r;
                spdy_headers_free(&h);
                return 0;
        }
        case SPDY_RST_STREAM: {
                if (fh->length != 8)
                        return -EBADMSG;
                sstream *s = find_stream(sc, get32(p) & 0x7fffffff);
                if (s)
                        peer_reset(sc, s);
                return 0;
        }
        case SPDY_SETTINGS: {
                if (fh->length < 4)
                        return -EBADMSG;
                uint32_t n = get32(p);
                if (n > (fh->length - 4) / 8 || fh->length != 4 + 8 * n)
                        return -EBADMSG;
                pthread_mutex_lock(&sc->lock);
                sc->aware = true;
                for (uint32_t i = 0; i < n; i++) {
                        const uint8_t *e = p + 4 + 8 * i;
                        uint32_t id = get32(e) & 0xffffff;
                        uint32_t v = get32(e + 4);
                        if (id == SPDY_SETTINGS_INITIAL_WINDOW_SIZE && v <= SPDY_MAX_WINDOW) {
                                int64_t delta = (int64_t)v - sc->initial_send_window;
                                sc->initial_send_window = v;
                                for (size_t k = 0; k < sc->n_streams; k++)
                                        sc->streams[k]->send_window += delta;
                        }
                }
                pthread_cond_broadcast(&sc->cond);
                pthread_mutex_unlock(&sc->lock);
                return 0;
        }
        case SPDY_PING: {
                if (fh->length != 4)
                        return -EBADMSG;
                uint32_t id = get32(p);
                if (id & 1) { /* client-initiated: echo */
                        uint8_t b[12];
                        send_control(sc, b, spdy_put_ping(b, id));
                }
                return 0;
        }
        case SPDY_GOAWAY:
                if (fh->length != 8)
                        return -EBADMSG;
                return 1; /* peer is leaving: stop reading new work */
        case SPDY_WINDOW_UPDATE: {
                if (fh->length != 8)
                        return -EBADMSG;
                uint32_t sid = get32(p) & 0x7fffffff;
                uint32_t delta = get32(p + 4) & 0x7fffffff;
                if (delta == 0)
                        return sid == 0 ? -EBADMSG : 0;
                pthread_mutex_lock(&sc->lock);
                sc->aware = true;
                if (sid == 0) {
                        sc->session_send_window += delta;
                        if (sc->session_send_window > SPDY_MAX_WINDOW) {
                                pthread_mutex_unlock(&sc->lock);
                                return -EBADMSG;
                        }
                } else {
                        sstream *s = find_stream(sc, sid);
                        if (s) {
                                s->send_window += delta;
                                if (s->send_window > SPDY_MAX_WINDOW) {
                                        s->reset = true;
                                        pthread_cond_broadcast(&sc->cond);
                                        pthread_mutex_unlock(&sc->lock);
                                        send_rst(sc, sid, SPDY_FLOW_CONTROL_ERROR);
                                        return 0;
                                }
                        }
                }
                pthread_cond_broadcast(&sc->cond);
                pthread_mutex_unlock(&sc->lock);
                return 0;
        }
        default:
                return 0; /* unknown control frames are ignored */
        }
}

/* Reads and dispatches one DATA frame's payload. */
static int on_data(spdy_conn *sc, const spdy_frame_header *fh, uint8_t *buf)
{
        sstream *s = find_stream(sc, fh->stream_id);
        bool discard = false;
        pthread_mutex_lock(&sc->lock);
        bool aware = sc->aware;
        sc->session_recv_consumed += fh->length;
        int64_t session_credit = 0;
        if (sc->session_recv_consumed >= SPDY_INITIAL_WINDOW / 2) {
                session_credit = sc->session_recv_consumed;
                sc->session_recv_consumed = 0;
        }
        uint32_t rst = 0;
        if (!s) {
                discard = true;
                if (fh->stream_id > sc->last_client_id || fh->stream_id == 0)
                        rst = SPDY_INVALID_STREAM;
        } else if (s->reset) {
                discard = true;
        } else if (s->fin_in) {
                discard = true;
                rst = SPDY_STREAM_ALREADY_CLOSED;
                s->reset = true;
        } else if (aware && (int64_t)fh->length > s->recv_window) {
                discard = true;
                rst = SPDY_FLOW_CONTROL_ERROR;
                s->reset = true;
        } else {
                s->recv_window -= fh->length;
        }
        pthread_cond_broadcast(&sc->cond);
        pthread_mutex_unlock(&sc->lock);
        if (session_credit)
                send_window_update(sc, 0, (uint32_t)session_credit);
        if (rst) {
                send_rst(sc, fh->stream_id, rst);
                if (s)
                        peer_reset(sc, s);
        }
        if (!discard && s->type < ST_CH_MAX && !sc->rc)
                maybe_start(sc, true);
        size_t left = fh->length;
        while (left > 0) {
                size_t n = CC_MIN(left, (size_t)DATA_CHUNK);
                int r = st_read_full(sc->c, buf, n);
                if (r < 0)
                        return r;
                left -= n;
                if (discard)
                        continue;
                if (s->type < ST_CH_MAX) {
                        if (sc->rc && rc_session_input(sc->rc, s->type, buf, n, aware) == -ENOBUFS) {
                                send_rst(sc, s->id, SPDY_FLOW_CONTROL_ERROR);
                                peer_reset(sc, s);
                                discard = true;
                        }
                } else if (s->pair && s->pair->fd >= 0) {
                        const uint8_t *q = buf;
                        size_t m = n;
                        while (m > 0) {
                                ssize_t w = send(s->pair->fd, q, m, MSG_NOSIGNAL);
                                if (w < 0 && errno == EINTR)
                                        continue;
                                if (w <= 0)
                                        break;
                                q += w;
                                m -= (size_t)w;
                        }
                        credit_stream(sc, s, n);
                } else {
                        credit_stream(sc, s, n);
                }
        }
        if (!discard && (fh->flags & SPDY_FLAG_FIN)) {
                pthread_mutex_lock(&sc->lock);
                s->fin_in = true;
                pthread_mutex_unlock(&sc->lock);
                if (s->type < ST_CH_MAX) {
                        if (sc->rc)
                                rc_session_input_eof(sc->rc, s->type);
                } else if (s->pair && s->pair->fd >= 0) {
                        shutdown(s->pair->fd, SHUT_WR);
                }
        }
        return 0;
}

static const char *const exec_protocols[] = { RC_PROTO_V5, RC_PROTO_V4, RC_PROTO_V3, RC_PROTO_V2, RC_PROTO_V1, NULL };
static const char *const pf_protocols[] = { PF_PROTO_V1, NULL };

/* Server-preference negotiation; "" when the client named no version. */
static const char *negotiate(const st_request *req, const char *const *supported, bool *ret_client_named)
{
        *ret_client_named = st_request_header(req, "X-Stream-Protocol-Version") != NULL;
        for (const char *const *p = supported; *p; p++)
                if (st_request_header_has_token(req, "X-Stream-Protocol-Version", *p))
                        return *p;
        return NULL;
}

void spdy_serve(st_conn *c, const st_request *req, st_ticket *tk)
{
        const char *const *supported = tk->kind == STREAMING_PORTFORWARD ? pf_protocols : exec_protocols;
        bool named;
        const char *proto = negotiate(req, supported, &named);
        if (!proto && named) {
                char extra[512] = "", list[256] = "";
                size_t o = 0, lo = 0;
                for (const char *const *p = supported; *p; p++) {
                        o += (size_t)snprintf(extra + o, sizeof(extra) - o, "X-Accepted-Stream-Protocol-Versions: %s\r\n", *p);
                        lo += (size_t)snprintf(list + lo, sizeof(list) - lo, "%s%s", lo ? " " : "", *p);
                }
                char body[512];
                snprintf(body, sizeof(body), "unable to upgrade: unable to negotiate protocol: server accepts [%s]\n", list);
                st_http_respond(c, 403, "Forbidden", extra, body);
                return;
        }
        if (!proto)
                proto = tk->kind == STREAMING_PORTFORWARD ? PF_PROTO_V1 : RC_PROTO_V1;

        char resp[256];
        int n = snprintf(resp, sizeof(resp),
                         "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                         "X-Stream-Protocol-Version: %s\r\n\r\n", proto);
        struct iovec iov = { resp, (size_t)n };
        if (st_writev_all(c, &iov, 1) < 0)
                return;

        spdy_conn *sc = calloc(1, sizeof(*sc));
        _cleanup_free_ uint8_t *buf = malloc(DATA_CHUNK > SPDY_MAX_CONTROL_PAYLOAD ? DATA_CHUNK : SPDY_MAX_CONTROL_PAYLOAD);
        if (!sc || !buf || spdy_zstream_init(&sc->inf, false) < 0 || spdy_zstream_init(&sc->def, true) < 0) {
                if (sc) {
                        spdy_zstream_end(&sc->inf);
                        spdy_zstream_end(&sc->def);
                }
                free(sc);
                return;
        }
        sc->t.ops = &spdy_transport_ops;
        sc->t.conn = c;
        sc->t.version = tk->kind == STREAMING_PORTFORWARD ? 0 : rc_protocol_version(proto);
        sc->c = c;
        sc->tk = tk;
        sc->initial_send_window = SPDY_INITIAL_WINDOW;
        sc->session_send_window = SPDY_INITIAL_WINDOW;
        pthread_mutex_init(&sc->lock, NULL);
        pthread_cond_init(&sc->cond, NULL);
        if (tk->kind == STREAMING_PORTFORWARD)
                st_server_session_count(tk->server, +1);

        long long create_deadline = st_now_ms() + tk->stream_creation_timeout_ms;
        if (tk->kind != STREAMING_PORTFORWARD)
                c->linger_ms = tk->stream_creation_timeout_ms;
        for (;;) {
                if (tk->kind != STREAMING_PORTFORWARD && !sc->rc && !sc->rc_failed && st_now_ms() > create_deadline) {
                        log_debug("spdy: timed out waiting for the client's streams");
                        break;
                }
                uint8_t hb[8];
                if (st_read_full(c, hb, 8) < 0)
                        break;
                spdy_frame_header fh;
                spdy_parse_frame_header(hb, &fh);
                int r;
                if (fh.control) {
                        if (fh.version != SPDY_VERSION) {
                                send_goaway(sc, SPDY_GOAWAY_PROTOCOL_ERROR);
                                break;
                        }
                        if (fh.length > SPDY_MAX_CONTROL_PAYLOAD) {
                                send_goaway(sc, SPDY_GOAWAY_PROTOCOL_ERROR);
                                break;
                        }
                        if (st_read_full(c, buf, fh.length) < 0)
                                break;
                        r = on_control(sc, &fh, buf);
                } else {
                        r = on_data(sc, &fh, buf);
                }
                if (r < 0) {
                        if (r != -ECONNRESET && r != -ETIMEDOUT && r != -EPIPE)
                                send_goaway(sc, SPDY_GOAWAY_PROTOCOL_ERROR);
                        break;
                }
        }
        /* the connection is over */
        if (sc->rc) {
                if (!rc_session_finished(sc->rc))
                        rc_session_client_gone(sc->rc);
                rc_session_join_free(sc->rc);
        }
        st_conn_kill(c);
        pthread_mutex_lock(&sc->lock);
        pthread_cond_broadcast(&sc->cond);
        pthread_mutex_unlock(&sc->lock);
        for (size_t i = 0; i < sc->n_pairs; i++)
                pf_pair_free(sc, sc->pairs[i]);
        for (size_t i = 0; i < sc->n_streams; i++)
                free(sc->streams[i]);
        if (tk->kind == STREAMING_PORTFORWARD)
                st_server_session_count(tk->server, -1);
        spdy_zstream_end(&sc->inf);
        spdy_zstream_end(&sc->def);
        pthread_mutex_destroy(&sc->lock);
        pthread_cond_destroy(&sc->cond);
        free(sc);
}
