/* SPDX-License-Identifier: Apache-2.0 */
/* One virtiofsd per pod, sharing exactly one directory,
 * <state>/sandboxes/<id>/shared, with the pod's VM over a vhost-user socket
 * in the pod's run directory (<run_dir>/virtiofsd.sock).
 *
 * virtiofsd runs in its own session so it outlives cocoond, is recorded as
 * pid + start time, and exits by itself when the VMM disconnects. Its stderr
 * goes to <run_dir>/virtiofsd.log. save()/load() describe it as JSON so a
 * restarted cocoond can re-attach (check it, stop it). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>

#include "common/error.h"

typedef struct virtiofsd virtiofsd;

typedef struct virtiofsd_config {
        const char *binary;     /* NULL: /usr/libexec/virtiofsd, else /usr/lib/qemu/virtiofsd */
        const char *shared_dir; /* must exist; see virtiofsd_shared_dir() */
        const char *run_dir;    /* must exist; gets virtiofsd.sock and virtiofsd.log */
        const char *cache;      /* "auto" (NULL), "always" or "none" */
        const char *sandbox;    /* "namespace" (NULL) or "chroot" */
} virtiofsd_config;

/* <state_dir>/sandboxes/<id>/shared, with id checked (cc_id_is_valid). */
int virtiofsd_shared_dir(const char *state_dir, const char *id, char **ret, cc_error **ret_err);
/* The virtiofsd binary that will be used for binary == NULL, or NULL. */
const char *virtiofsd_default_binary(void);

/* Creates the listening socket and spawns virtiofsd on it (--fd), without
 * waiting: a VMM can connect right away. A virtiofsd that fails to start
 * closes the socket, so the VMM's connection fails (see virtiofsd_explain).
 * On failure nothing is left behind. */
int virtiofsd_start(const virtiofsd_config *c, virtiofsd **ret, cc_error **ret_err);
/* For a VMM that failed to start: when its error names virtiofsd's socket or
 * the vhost-user-fs device (it could not connect, or lost the connection) and
 * virtiofsd has exited, *vmm_err becomes virtiofsd's own: that it exited, and
 * the end of its log. A VMM failing for another reason makes virtiofsd exit
 * too; its error stays. */
void virtiofsd_explain(virtiofsd *d, cc_error **vmm_err);
/* SIGTERM, then SIGKILL after timeout_ms; reaps it if it is our child; removes
 * the socket. Idempotent; a daemon that already exited is success. */
int virtiofsd_stop(virtiofsd *d, int timeout_ms, cc_error **ret_err);
/* Same pid and start time, not a zombie. */
bool virtiofsd_alive(virtiofsd *d);
int virtiofsd_pid(virtiofsd *d);
/* Readable once virtiofsd exited; owned by d; -1 if it could not be opened. */
int virtiofsd_exit_fd(virtiofsd *d);
const char *virtiofsd_socket_path(virtiofsd *d);
const char *virtiofsd_shared_path(virtiofsd *d);

/* {"version":1,"pid":..,"start_time":..,"socket":..,"shared_dir":..} */
int virtiofsd_save(virtiofsd *d, json_object **ret, cc_error **ret_err);
/* Re-attaches to a saved virtiofsd. Succeeds for a well-formed record even
 * when that very process is gone: check virtiofsd_alive(), and stop() still
 * cleans up the socket. */
int virtiofsd_load(json_object *saved, virtiofsd **ret, cc_error **ret_err);
/* Frees memory; does not stop the process. */
void virtiofsd_free(virtiofsd *d);
static inline void virtiofsd_freep(virtiofsd **d) { if (*d) virtiofsd_free(*d); }
#define _cleanup_virtiofsd_ __attribute__((cleanup(virtiofsd_freep)))
