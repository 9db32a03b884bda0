// POSIX timers keep their ids, clocks, signals, values and times: a periodic monotonic timer
// keeps firing (its handler sees its sival), a one-hour one-shot keeps counting down, a
// thread-directed timer still signals its thread, and a disarmed one stays disarmed.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks, bad_value, thread_ticks;
static pid_t worker_tid;

static void on_tick(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (si->si_value.sival_int != 42) bad_value = si->si_value.sival_int ? si->si_value.sival_int : -1;
    ticks++;
}

static void on_thread_tick(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)si; (void)uc;
    if (syscall(SYS_gettid) == worker_tid) thread_ticks++;
}

static void *worker(void *arg) {
    (void)arg;
    worker_tid = syscall(SYS_gettid);
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct sigaction sa = { .sa_sigaction = on_tick, .sa_flags = SA_SIGINFO | SA_RESTART };
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_sigaction = on_thread_tick;
    sigaction(SIGUSR2, &sa, NULL);
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    while (!worker_tid) usleep(1000);

    timer_t periodic, oneshot, disarmed, directed;
    struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1, .sigev_value.sival_int = 42 };
    if (timer_create(CLOCK_MONOTONIC, &sev, &periodic)) fail("timer_create: %m");
    struct sigevent quiet = { .sigev_notify = SIGEV_NONE };
    if (timer_create(CLOCK_REALTIME, &quiet, &oneshot)) fail("timer_create: %m");
    if (timer_create(CLOCK_BOOTTIME, &quiet, &disarmed)) fail("timer_create: %m");
    struct sigevent to_thread = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR2 };
    to_thread._sigev_un._tid = worker_tid;
    if (timer_create(CLOCK_MONOTONIC, &to_thread, &directed)) fail("timer_create: %m");
    struct itimerspec p = { { 0, 10 * 1000 * 1000 }, { 0, 10 * 1000 * 1000 } };
    struct itimerspec o = { { 0, 0 }, { 3600, 0 } };
    struct itimerspec d = { { 0, 20 * 1000 * 1000 }, { 0, 20 * 1000 * 1000 } };
    timer_settime(periodic, 0, &p, NULL);
    timer_settime(oneshot, 0, &o, NULL);
    timer_settime(directed, 0, &d, NULL);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);  // only the worker takes the thread's signal
    test_daemon();
    test_waitsig();

    int t0 = ticks, w0 = thread_ticks;
    struct timespec wait = { 0, 300 * 1000 * 1000 };
    while (nanosleep(&wait, &wait)) {}
    if (ticks - t0 < 10) fail("the periodic timer fired %d times in 300 ms after restore", ticks - t0);
    if (thread_ticks - w0 < 5) fail("the thread-directed timer fired %d times in 300 ms after restore", thread_ticks - w0);
    if (bad_value) fail("the periodic timer delivered sival %d, expected 42", bad_value);
    struct itimerspec cur;
    if (timer_gettime(periodic, &cur)) fail("timer_gettime(periodic): %m (id lost)");
    else if (cur.it_interval.tv_nsec != 10 * 1000 * 1000 || cur.it_interval.tv_sec) fail("periodic interval %ld.%09ld", cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
    if (timer_gettime(oneshot, &cur)) fail("timer_gettime(oneshot): %m (id lost)");
    else if (cur.it_value.tv_sec < 3000 || cur.it_value.tv_sec > 3600 || cur.it_interval.tv_sec) fail("one-shot has %ld s left", cur.it_value.tv_sec);
    if (timer_gettime(disarmed, &cur)) fail("timer_gettime(disarmed): %m (id lost)");
    else if (cur.it_value.tv_sec || cur.it_value.tv_nsec) fail("the disarmed timer is armed");
    if (timer_gettime(directed, &cur)) fail("timer_gettime(directed): %m (id lost)");
    return test_report();
}
