/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/grpc-client.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

struct cri_grpc_channel {
        grpc_channel *channel;
};

void cri_grpc_client_init(void) { grpc_init(); }
void cri_grpc_client_shutdown(void) { grpc_shutdown(); }

int cri_grpc_channel_open(const char *target, cri_grpc_channel **ret, cc_error **ret_err)
{
        cri_grpc_channel *ch = calloc(1, sizeof(*ch));
        if (!ch)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        grpc_arg args[2];
        memset(args, 0, sizeof(args));
        args[0].type = GRPC_ARG_INTEGER;
        args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
        args[0].value.integer = 64 * 1024 * 1024;
        /* Benchmarks: one HTTP/2 connection per channel, as crictl and the kubelet use. */
        args[1].type = GRPC_ARG_INTEGER;
        args[1].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
        args[1].value.integer = 1;
        grpc_channel_args cargs = { 2, args };
        grpc_channel_credentials *creds = grpc_insecure_credentials_create();
        ch->channel = grpc_channel_create(target, creds, &cargs);
        grpc_channel_credentials_release(creds);
        if (!ch->channel) {
                free(ch);
                return cc_error_set(ret_err, -EINVAL, "cannot create a channel to '%s'", target);
        }
        *ret = ch;
        return 0;
}

void cri_grpc_channel_close(cri_grpc_channel *ch)
{
        if (!ch)
                return;
        grpc_channel_destroy(ch->channel);
        free(ch);
}

int cri_grpc_call(cri_grpc_channel *ch, const char *method, const uint8_t *req, size_t req_len,
                  int timeout_ms, uint8_t **ret_resp, size_t *ret_len, int *ret_code,
                  char **ret_msg, cc_error **ret_err)
{
        grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
        gpr_timespec deadline =
                timeout_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                              gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                               : gpr_inf_future(GPR_CLOCK_REALTIME);
        grpc_slice mslice = grpc_slice_from_copied_string(method);
        grpc_call *call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                   mslice, NULL, deadline, NULL);
        grpc_slice_unref(mslice);
        grpc_slice req_slice = grpc_slice_from_copied_buffer((const char *)req, req_len);
        grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&req_slice, 1);
        grpc_slice_unref(req_slice);
        grpc_byte_buffer *recv = NULL;
        grpc_metadata_array init_md, trail_md;
        grpc_metadata_array_init(&init_md);
        grpc_metadata_array_init(&trail_md);
        grpc_status_code status = GRPC_STATUS_UNKNOWN;
        grpc_slice details = grpc_empty_slice();

        grpc_op ops[6];
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = send;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &recv;
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
        ops[5].data.recv_status_on_client.status = &status;
        ops[5].data.recv_status_on_client.status_details = &details;
        int r = 0;
        void *tag = (void *)1;
        if (grpc_call_start_batch(call, ops, 6, tag, NULL) != GRPC_CALL_OK) {
                r = cc_error_set(ret_err, -EIO, "%s: cannot start the call", method);
        } else {
                grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                if (ev.type != GRPC_OP_COMPLETE)
                        r = cc_error_set(ret_err, -EIO, "%s: call did not complete", method);
        }
        if (r == 0) {
                *ret_code = (int)status;
                *ret_resp = NULL;
                *ret_len = 0;
                *ret_msg = NULL;
                if (status == GRPC_STATUS_OK && recv) {
                        grpc_byte_buffer_reader rd;
                        if (grpc_byte_buffer_reader_init(&rd, recv)) {
                                grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
                                size_t n = GRPC_SLICE_LENGTH(all);
                                *ret_resp = malloc(n ? n : 1);
                                if (*ret_resp) {
                                        memcpy(*ret_resp, GRPC_SLICE_START_PTR(all), n);
                                        *ret_len = n;
                                }
                                grpc_slice_unref(all);
                                grpc_byte_buffer_reader_destroy(&rd);
                        }
                } else if (status != GRPC_STATUS_OK) {
                        char *d = grpc_slice_to_c_string(details);
                        *ret_msg = d ? strdup(d) : NULL;
                        gpr_free(d);
                }
        }
        grpc_slice_unref(details);
        grpc_metadata_array_destroy(&init_md);
        grpc_metadata_array_destroy(&trail_md);
        grpc_byte_buffer_destroy(send);
        if (recv)
                grpc_byte_buffer_destroy(recv);
        grpc_call_unref(call);
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(cq);
        return r;
}
