// A parent-death signal (PR_SET_PDEATHSIG) comes back, in every flavour: a leaf under a middle
// process asks for SIGUSR1 when its parent dies. After restore it must still read SIGUSR1
// back, and when the root kills the middle process the leaf must get SIGUSR1 and say so.
// (A restore that changes a task's ids, as in a user namespace, clears it in the kernel.)
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void on_usr1(int s) { (void)s; got = 1; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    int report[2];
    if (pipe(report)) fail("pipe: %m");
    pid_t mid = test_fork();
    if (mid == 0) {
        close(report[0]);
        pid_t leaf = test_fork();
        if (leaf == 0) {
            struct sigaction sa = { .sa_handler = on_usr1 };
            sigaction(SIGUSR1, &sa, NULL);
            if (prctl(PR_SET_PDEATHSIG, SIGUSR1)) _exit(2);
            char c = 'r';
            if (write(report[1], &c, 1) != 1) _exit(3);
            pid_t parent = getppid();
            // Orphaned without the signal: give up after 2 s rather than linger.
            for (int orphaned = 0; !got && orphaned < 200; ) {
                usleep(10000);
                if (getppid() != parent) orphaned++;
            }
            c = got ? 'u' : 'n';
            if (write(report[1], &c, 1) != 1) _exit(4);
            _exit(0);
        }
        close(report[1]);
        for (;;) pause();  // killed by the root
    }
    close(report[1]);
    char c = 0;
    if (read(report[0], &c, 1) != 1 || c != 'r') fail("the leaf did not set its parent-death signal");
    test_daemon();
    test_waitsig();
    kill(mid, SIGKILL);
    waitpid(mid, NULL, 0);
    // The leaf, reparented to us (we are its subreaper or it goes to init), says it got SIGUSR1.
    struct timeval tv = { .tv_sec = 5 };
    fd_set r;
    FD_ZERO(&r);
    FD_SET(report[0], &r);
    if (select(report[0] + 1, &r, NULL, NULL, &tv) != 1 || read(report[0], &c, 1) != 1 || c != 'u')
        fail("the leaf got no SIGUSR1 when its parent died (parent-death signal lost)");
    return test_report();
}
