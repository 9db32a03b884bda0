// Eight threads, each with state of its own that must come back to that thread: its tid, a
// signal mask, an alternate signal stack, a thread-local counter, a pattern on its stack, and
// what it is doing: spinning, sleeping in nanosleep, waiting on a condition variable (a
// futex), or blocked in sigwaitinfo; and what the kernel holds for it: its rseq registration
// and its clear-tid address (pthread_join waits on the latter). After SIGTERM every thread
// checks itself.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NTHREADS 8

static __thread uint64_t tls_counter;
static __thread int tls_index = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static volatile int done;
static int ready;

struct worker {
    pthread_t th;
    int index;
    pid_t tid;
    sigset_t mask;
    char altstack[16384];
    void *clear_tid;   // PR_GET_TID_ADDRESS at start
    uint32_t rseq_len; // the length glibc registered its rseq area with (0: none)
    char result[256];
    uint64_t progress;
};
static struct worker w[NTHREADS];

// Asking the kernel to register the same rseq area again answers EBUSY when exactly this
// area, length and signature are registered, EINVAL when another is, and registers (0) when
// none is. glibc's length is not exported, so the usual ones are tried.
static uint32_t rseq_registered_len(void) {
    if (__rseq_size == 0) return 0;
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    uint32_t lens[] = { 32, __rseq_size, (__rseq_size + 31) & ~31u };
    for (int i = 0; i < 3; i++) {
        long r = syscall(SYS_rseq, area, lens[i], 0, RSEQ_SIG);
        if (r == 0) return 0;  // none was registered: this call did it
        if (errno == EBUSY) return lens[i];
    }
    return 0;
}

static void check_self(struct worker *me, const char *stackpat, size_t patlen, uint64_t seed) {
    pid_t tid = syscall(SYS_gettid);
    if (tid != me->tid) { snprintf(me->result, sizeof(me->result), "tid %d, expected %d", tid, me->tid); return; }
    if (tls_index != me->index) { snprintf(me->result, sizeof(me->result), "TLS index %d, expected %d", tls_index, me->index); return; }
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    for (int s = 1; s < 32; s++) {
        if (s == SIGTERM) continue;
        if (sigismember(&now, s) != sigismember(&me->mask, s)) {
            snprintf(me->result, sizeof(me->result), "signal %d %s in the mask", s, sigismember(&now, s) ? "appeared" : "vanished");
            return;
        }
    }
    stack_t ss;
    sigaltstack(NULL, &ss);
    if (ss.ss_sp != me->altstack || ss.ss_size != sizeof(me->altstack)) {
        snprintf(me->result, sizeof(me->result), "sigaltstack %p/%zu, expected %p/%zu", ss.ss_sp, ss.ss_size, me->altstack, sizeof(me->altstack));
        return;
    }
    void *ct = NULL;
    if (prctl(PR_GET_TID_ADDRESS, &ct) == 0 && ct != me->clear_tid) {
        snprintf(me->result, sizeof(me->result), "clear-tid address %p, expected %p", ct, me->clear_tid);
        return;
    }
    if (me->rseq_len && rseq_registered_len() != me->rseq_len) {
        snprintf(me->result, sizeof(me->result), "rseq area no longer registered (length %u at start)", me->rseq_len);
        return;
    }
    if (datachk(stackpat, patlen, seed) >= 0) { snprintf(me->result, sizeof(me->result), "stack pattern damaged"); return; }
    strcpy(me->result, "ok");
}

static void *worker(void *arg) {
    struct worker *me = arg;
    me->tid = syscall(SYS_gettid);
    tls_index = me->index;
    if (prctl(PR_GET_TID_ADDRESS, &me->clear_tid)) me->clear_tid = NULL;
    me->rseq_len = rseq_registered_len();
    // Each thread blocks a different set of signals (SIGTERM goes to the main thread).
    sigemptyset(&me->mask);
    sigaddset(&me->mask, SIGTERM);
    sigaddset(&me->mask, SIGUSR1 + (me->index % 2));
    sigaddset(&me->mask, SIGRTMIN + me->index);
    pthread_sigmask(SIG_SETMASK, &me->mask, NULL);
    stack_t ss = { .ss_sp = me->altstack, .ss_size = sizeof(me->altstack) };
    sigaltstack(&ss, NULL);
    char stackpat[4096];
    uint64_t seed = 1000 + me->index;
    datagen(stackpat, sizeof(stackpat), seed);
    pthread_mutex_lock(&lock);
    ready++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);

    while (!done) {
        switch (me->index % 4) {
        case 0:  // spin
            tls_counter++;
            break;
        case 1: {  // sleep
            struct timespec d = { 0, 20 * 1000 * 1000 };
            nanosleep(&d, NULL);
            tls_counter++;
            break;
        }
        case 2:  // futex wait
            pthread_mutex_lock(&lock);
            if (!done) pthread_cond_wait(&cond, &lock);
            pthread_mutex_unlock(&lock);
            tls_counter++;
            break;
        case 3: {  // blocked in sigtimedwait on its own real-time signal
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGRTMIN + me->index);
            struct timespec d = { 0, 50 * 1000 * 1000 };
            sigtimedwait(&s, NULL, &d);
            tls_counter++;
            break;
        }
        }
        me->progress = tls_counter;
    }
    check_self(me, stackpat, sizeof(stackpat), seed);
    return NULL;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    for (int i = 0; i < NTHREADS; i++) {
        w[i].index = i;
        if (pthread_create(&w[i].th, NULL, worker, &w[i])) fail("pthread_create: %m");
    }
    pthread_mutex_lock(&lock);
    while (ready < NTHREADS) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    pid_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) tids[i] = w[i].tid;
    test_daemon();
    uint64_t seen[NTHREADS];
    while (!test_stopped()) {
        for (int i = 0; i < NTHREADS; i++) seen[i] = w[i].progress;
        // Wake the futex waiters now and then, so they make progress too.
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
        usleep(50 * 1000);
    }
    // Every thread must still be moving after restore: give them a moment, then look.
    struct timespec d = { 0, 200 * 1000 * 1000 };
    for (int round = 0; round < 5; round++) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
        nanosleep(&d, NULL);
    }
    for (int i = 0; i < NTHREADS; i++)
        if (w[i].progress <= seen[i]) fail("thread %d (tid %d) made no progress after SIGTERM (%llu)", i, tids[i], (unsigned long long)seen[i]);
    done = 1;
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    // Results first: a lost clear-tid address would hang pthread_join without saying why.
    for (int i = 0; i < NTHREADS; i++) {
        for (int t = 0; t < 500 && !((volatile char *)w[i].result)[0]; t++) usleep(10000);
        if (strcmp(w[i].result, "ok")) fail("thread %d (tid %d): %s", i, tids[i], w[i].result[0] ? w[i].result : "did not finish its check");
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(w[i].th, NULL);
    return test_report();
}
