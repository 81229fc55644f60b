/* SPDX-License-Identifier: Apache-2.0 */
/* Container and pod lifecycle events (GetContainerEvents): a publisher
 * calls rt_events_publish() once per state change; every subscriber has a
 * bounded queue of its own. A subscriber that falls RT_EVENTS_QUEUE events
 * behind loses its subscription (rt_events_next: -EOVERFLOW) instead of
 * slowing the runtime down or growing without bound: the kubelet then lists
 * again, as it does when its event stream breaks. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/internal.h"

#define RT_EVENTS_QUEUE 1024

struct rt_event_sub {
        rt_event q[RT_EVENTS_QUEUE];
        size_t head, n;
        bool overflow;
        pthread_cond_t cond;
        rt_event_sub *next;
};

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;

int rt_events_subscribe(rt_runtime *rt, rt_event_sub **ret)
{
        rt_event_sub *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cond, &a);
        pthread_condattr_destroy(&a);
        pthread_mutex_lock(&ev_lock);
        size_t n = 0;
        for (rt_event_sub *i = rt->event_subs; i; i = i->next)
                n++;
        if (n >= RT_EVENTS_MAX_SUBS) {
                pthread_mutex_unlock(&ev_lock);
                pthread_cond_destroy(&s->cond);
                free(s);
                return -EMFILE;
        }
        s->next = rt->event_subs;
        rt->event_subs = s;
        pthread_mutex_unlock(&ev_lock);
        *ret = s;
        return 0;
}

void rt_events_unsubscribe(rt_runtime *rt, rt_event_sub *s)
{
        if (!s)
                return;
        pthread_mutex_lock(&ev_lock);
        for (rt_event_sub **p = &rt->event_subs; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        pthread_mutex_unlock(&ev_lock);
        pthread_cond_destroy(&s->cond);
        free(s);
}

void rt_events_publish(rt_runtime *rt, rt_event_type type, const char *id, const char *pod_id)
{
        if (!rt || !id)
                return;
        rt_event e = { .type = type, .ts_ns = rt_now_ns() };
        snprintf(e.id, sizeof(e.id), "%s", id);
        snprintf(e.pod_id, sizeof(e.pod_id), "%s", pod_id ? pod_id : id);
        pthread_mutex_lock(&ev_lock);
        for (rt_event_sub *s = rt->event_subs; s; s = s->next) {
                if (s->n == RT_EVENTS_QUEUE) {
                        s->overflow = true;
                } else {
                        s->q[(s->head + s->n) % RT_EVENTS_QUEUE] = e;
                        s->n++;
                }
                pthread_cond_signal(&s->cond);
        }
        pthread_mutex_unlock(&ev_lock);
}

int rt_events_next(rt_event_sub *s, int timeout_ms, rt_event *ret)
{
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&ev_lock);
        int r = 0;
        while (!s->n && !s->overflow && r == 0)
                r = pthread_cond_timedwait(&s->cond, &ev_lock, &dl);
        if (s->overflow) {
                r = -EOVERFLOW;
        } else if (s->n) {
                *ret = s->q[s->head];
                s->head = (s->head + 1) % RT_EVENTS_QUEUE;
                s->n--;
                r = 0;
        } else {
                r = -ETIMEDOUT;
        }
        pthread_mutex_unlock(&ev_lock);
        return r;
}
