// Timer slack, current and default: each thread's default is the slack its creator had at
// clone, and prctl(PR_SET_TIMERSLACK, 0) puts the current one back to it. After restore the
// current and the default must both be as dumped: in the main thread, a second thread, a child
// process, a SCHED_FIFO thread (whose slack is 0 until it leaves FIFO) and a child forked by
// that thread (default 0).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

enum { T_DEFAULT = 100001, T_CURRENT = 200002, C_DEFAULT = 300003, C_CURRENT = 400004, R_DEFAULT = 500005,
       M_CURRENT = 600006, RC_CURRENT = 700007 };

static long cur(void) { return prctl(PR_GET_TIMERSLACK); }

// The default, read by resetting to it; the current slack is put back.
static long dflt(void) {
    long c = cur();
    prctl(PR_SET_TIMERSLACK, 0);
    long d = cur();
    if (c) prctl(PR_SET_TIMERSLACK, c);
    return d;
}

// Each check returns 0 when the slack is as expected, else a small code for the exit status.
static int check(const char *who, long want_cur, long want_def) {
    long c = cur(), d = dflt();
    if (c == want_cur && d == want_def) return 0;
    fail("%s: timer slack %ld ns, default %ld ns; expected %ld, %ld", who, c, d, want_cur, want_def);
    return c != want_cur ? 3 : 4;
}

static volatile int t_ready, r_ready;
static volatile pid_t rc_pid;

static void *thread_main(void *arg) {
    (void)arg;
    prctl(PR_SET_TIMERSLACK, T_CURRENT);
    check("second thread (set-up)", T_CURRENT, T_DEFAULT);
    t_ready = 1;
    while (!test_stopped()) usleep(10000);
    check("second thread", T_CURRENT, T_DEFAULT);
    return NULL;
}

static void *rt_main(void *arg) {
    (void)arg;
    struct sched_param p = { .sched_priority = 1 };
    // SCHED_RESET_ON_FORK: the child it forks runs SCHED_OTHER, with the 0 slack it had.
    if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &p)) fail("SCHED_FIFO: %m");
    if (cur() != 0) fail("a SCHED_FIFO thread has slack %ld", cur());
    pid_t c = test_fork();
    if (c == 0) {
        prctl(PR_SET_TIMERSLACK, RC_CURRENT);
        int bad = check("child of the FIFO thread (set-up)", RC_CURRENT, 0);
        test_waitsig();
        _exit(bad ? bad : check("child of the FIFO thread", RC_CURRENT, 0));
    }
    rc_pid = c;
    r_ready = 1;
    while (!test_stopped()) usleep(10000);
    if (cur() != 0) fail("FIFO thread: timer slack %ld ns, expected 0", cur());
    // Leaving FIFO, a thread's slack becomes its default.
    p.sched_priority = 0;
    if (sched_setscheduler(0, SCHED_OTHER, &p)) fail("SCHED_OTHER: %m");
    if (cur() != R_DEFAULT) fail("FIFO thread: default timer slack %ld ns (seen on leaving FIFO), expected %d", cur(), R_DEFAULT);
    return NULL;
}

static void reap(const char *who, pid_t pid) {
    int st;
    kill(pid, SIGTERM);
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
        fail("%s: status %#x (3: current slack differs, 4: default differs)", who, st);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    long m_default = dflt();
    prctl(PR_SET_TIMERSLACK, T_DEFAULT);
    pthread_t th, rt;
    pthread_create(&th, NULL, thread_main, NULL);
    while (!t_ready) usleep(1000);
    prctl(PR_SET_TIMERSLACK, C_DEFAULT);
    pid_t child = test_fork();
    if (child == 0) {
        prctl(PR_SET_TIMERSLACK, C_CURRENT);
        int bad = check("child (set-up)", C_CURRENT, C_DEFAULT);
        test_waitsig();
        _exit(bad ? bad : check("child", C_CURRENT, C_DEFAULT));
    }
    prctl(PR_SET_TIMERSLACK, R_DEFAULT);
    pthread_create(&rt, NULL, rt_main, NULL);
    while (!r_ready) usleep(1000);
    prctl(PR_SET_TIMERSLACK, M_CURRENT);
    check("main thread (set-up)", M_CURRENT, m_default);
    test_daemon();
    test_waitsig();
    check("main thread", M_CURRENT, m_default);
    pthread_join(th, NULL);
    pthread_join(rt, NULL);
    reap("child", child);
    reap("child of the FIFO thread", rc_pid);
    return test_report();
}
