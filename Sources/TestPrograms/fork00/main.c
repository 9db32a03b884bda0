// A tree that never holds still: the parent forks short-lived children all the time (each
// exits with a code derived from its number after a moment, some after forking a grandchild
// of their own that exits at once), and a second thread creates and joins short-lived threads
// all the time. The dump must catch every task that exists when it freezes, including ones
// forked while it was freezing: after restore the parent reaps every child it forked, each
// with its own exit code, and waitpid never says a child it knows of does not exist.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define MAXLIVE 8
#define MAXKIDS 65536

struct kid { pid_t pid; unsigned n; };
static struct kid live[MAXLIVE];
static int nlive;
static volatile int stop_threads;
static volatile unsigned long threads_made;

// A task restored wrongly tends to crash where it resumes: say where, instead of a silent
// core dump.
static void on_fault(int sig, siginfo_t *si, void *uc_) {
    ucontext_t *uc = uc_;
    char buf[200];
    int n = snprintf(buf, sizeof(buf), "FAIL: pid %d tid %d: signal %d at rip %#llx, address %p, code %d\n", getpid(), (int)gettid(), sig,
                     (unsigned long long)uc->uc_mcontext.gregs[REG_RIP], si->si_addr, si->si_code);
    write(2, buf, n);
    _exit(100 + sig);
}

static int code_of(unsigned n) { return (int)(n % 113) + 1; }

static void *spin_thread(void *arg) { return arg; }

static void *thread_maker(void *arg) {
    (void)arg;
    while (!stop_threads) {
        pthread_t t;
        void *ret = NULL;
        if (pthread_create(&t, NULL, spin_thread, (void *)threads_made)) { fail("pthread_create: %m"); break; }
        if (pthread_join(t, &ret)) { fail("pthread_join: %m"); break; }
        if ((unsigned long)ret != threads_made) { fail("a short-lived thread returned %lu, expected %lu", (unsigned long)ret, threads_made); break; }
        threads_made++;
    }
    return NULL;
}

static void child(unsigned n) {
    if (n % 4 == 0) {
        pid_t g = fork();
        if (g == 0) _exit(0);  // a grandchild: reaped by its parent below
        if (g > 0) waitpid(g, NULL, 0);
    }
    struct timespec d = {0, (long)(n % 5) * 1000 * 1000};
    nanosleep(&d, NULL);
    _exit(code_of(n));
}

// Reaps what has exited; with `block`, waits for everything.
static void reap(int block) {
    while (nlive > 0) {
        int st;
        pid_t p = waitpid(-1, &st, block ? 0 : WNOHANG);
        if (p == 0) return;
        if (p < 0) {
            if (errno == EINTR) continue;
            fail("waitpid with %d children alive (first %d): %m: a child was lost", nlive, live[0].pid);
            nlive = 0;
            return;
        }
        int i;
        for (i = 0; i < nlive && live[i].pid != p; i++) {}
        if (i == nlive) { fail("waitpid returned %d, not a child of ours", p); continue; }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != code_of(live[i].n))
            fail("child %u (pid %d) ended with status %#x, expected exit %d", live[i].n, p, st, code_of(live[i].n));
        live[i] = live[--nlive];
    }
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct sigaction sa = {.sa_sigaction = on_fault, .sa_flags = SA_SIGINFO};
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    pthread_t maker;
    if (pthread_create(&maker, NULL, thread_maker, NULL)) fail("pthread_create: %m");
    unsigned n = 0;
    test_daemon();
    while (!test_stopped()) {
        reap(0);
        if (nlive < MAXLIVE) {
            pid_t p = fork();
            if (p < 0) { fail("fork: %m"); break; }
            if (p == 0) child(n);
            live[nlive].pid = p;
            live[nlive].n = n++;
            nlive++;
        } else {
            usleep(200);
        }
    }
    reap(1);
    stop_threads = 1;
    pthread_join(maker, NULL);
    if (n == 0) fail("no child forked");
    test_msg("%u children, %lu threads\n", n, threads_made);
    return test_report();
}
