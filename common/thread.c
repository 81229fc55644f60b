/* SPDX-License-Identifier: Apache-2.0 */
#include <pthread.h>

#include "common/thread.h"

int cc_thread_start_detached(void *(*fn)(void *), void *arg, size_t stack_size)
{
        pthread_attr_t attr;
        int r = pthread_attr_init(&attr);
        if (r != 0)
                return -r;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (stack_size)
                pthread_attr_setstacksize(&attr, stack_size);
        pthread_t t;
        r = pthread_create(&t, &attr, fn, arg);
        pthread_attr_destroy(&attr);
        return -r;
}
