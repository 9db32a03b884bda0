// A thread's scheduling state comes back: nice, policy and real-time priority (with
// SCHED_RESET_ON_FORK), I/O priority and timer slack, each different in the main thread
// and in a second one.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_VALUE(class, data) (((class) << 13) | (data))

struct state { int policy, prio, nice, ioprio; long slack; };

static struct state read_state(pid_t tid) {
    struct state s;
    struct sched_param p = { 0 };
    s.policy = sched_getscheduler(tid);
    sched_getparam(tid, &p);
    s.prio = p.sched_priority;
    errno = 0;
    s.nice = getpriority(PRIO_PROCESS, tid);
    s.ioprio = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid);
    s.slack = -1;
    return s;
}

static void check(const char *who, struct state want, struct state got) {
    if (memcmp(&want, &got, sizeof(want)))
        fail("%s: policy %d prio %d nice %d ioprio 0x%x slack %ld, expected policy %d prio %d nice %d ioprio 0x%x slack %ld", who,
             got.policy, got.prio, got.nice, got.ioprio, got.slack, want.policy, want.prio, want.nice, want.ioprio, want.slack);
}

static pid_t thread_tid;
static long thread_slack;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready, asked;

static void *thread(void *arg) {
    (void)arg;
    thread_tid = gettid();
    struct sched_param p = { .sched_priority = 7 };
    if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &p)) fail("SCHED_FIFO: %m");
    if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_VALUE(2, 6))) fail("ioprio_set: %m");
    pthread_mutex_lock(&mu);
    ready = 1;
    pthread_cond_broadcast(&cv);
    while (!asked) pthread_cond_wait(&cv, &mu);
    // Timer slack is readable only by the thread itself.
    thread_slack = prctl(PR_GET_TIMERSLACK);
    ready = 2;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (setpriority(PRIO_PROCESS, 0, 7)) fail("nice: %m");
    struct sched_param p = { 0 };
    if (sched_setscheduler(0, SCHED_BATCH, &p)) fail("SCHED_BATCH: %m");
    if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_VALUE(3, 0))) fail("ioprio_set: %m");
    if (prctl(PR_SET_TIMERSLACK, 123457)) fail("PR_SET_TIMERSLACK: %m");
    pthread_t t;
    pthread_create(&t, NULL, thread, NULL);
    pthread_mutex_lock(&mu);
    while (!ready) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    struct state main_want = read_state(gettid()), thread_want = read_state(thread_tid);
    main_want.slack = prctl(PR_GET_TIMERSLACK);
    if (main_want.policy != SCHED_BATCH || main_want.nice != 7 || main_want.slack != 123457) fail("set-up did not take: policy %d nice %d slack %ld", main_want.policy, main_want.nice, main_want.slack);
    if (thread_want.policy != (SCHED_FIFO | SCHED_RESET_ON_FORK) || thread_want.prio != 7) fail("thread set-up did not take: policy 0x%x prio %d", thread_want.policy, thread_want.prio);
    test_daemon();
    test_waitsig();
    struct state main_got = read_state(gettid()), thread_got = read_state(thread_tid);
    main_got.slack = prctl(PR_GET_TIMERSLACK);
    check("main thread", main_want, main_got);
    check("second thread", thread_want, thread_got);
    pthread_mutex_lock(&mu);
    asked = 1;
    pthread_cond_broadcast(&cv);
    while (ready != 2) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
    // An RT thread has no slack (the kernel keeps 0); it is checked for what it reads.
    if (thread_slack != 0 && thread_slack != 50000) fail("second thread: timer slack %ld", thread_slack);
    return test_report();
}
