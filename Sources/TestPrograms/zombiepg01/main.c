// A process group whose leader is gone (CRIU's zombie01; `a | b` after `a` exited): child A
// makes its own group, forks B (live) and C (exits) as the root's children (CLONE_PARENT), and
// exits; the root reaps A. After restore B and the zombie C are still in group A, the group
// still works (kill(-A)), and no process holds pid A.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr1;
static void on_usr1(int s) { (void)s; got_usr1 = 1; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    int ready[2], live[2];  // the leader sends the members' pids, the live member its readiness
    if (pipe(ready) || pipe(live)) fail("pipe: %m");
    pid_t a = test_fork();
    if (a == 0) {
        if (setpgid(0, 0)) _exit(10);
        pid_t b = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
        if (b == 0) {
            signal(SIGUSR1, on_usr1);
            sigset_t none;
            sigemptyset(&none);
            close(ready[0]);
            close(ready[1]);
            close(live[0]);
            if (write(live[1], "r", 1) != 1) _exit(11);
            close(live[1]);
            // Woken by SIGUSR1 sent to the whole group, then by SIGTERM.
            while (!got_usr1) sigsuspend(&none);
            _exit(getpgrp() == getppid() ? 12 : 0);  // never its parent's group
        }
        pid_t c = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
        if (c == 0) _exit(5);
        if (b < 0 || c < 0) _exit(13);
        pid_t pids[2] = { b, c };
        if (write(ready[1], pids, sizeof(pids)) != sizeof(pids)) _exit(14);
        _exit(0);
    }
    close(ready[1]);
    close(live[1]);
    int st;
    if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st)) fail("leader %d: status %#x", a, st);
    pid_t pids[2];
    char r;
    if (read(ready[0], pids, sizeof(pids)) != sizeof(pids)) fail("no pids from the leader");
    if (read(live[0], &r, 1) != 1) fail("the live member did not start");
    close(ready[0]);
    close(live[0]);
    pid_t b = pids[0], c = pids[1];
    siginfo_t si;
    if (waitid(P_PID, c, &si, WEXITED | WNOWAIT)) fail("waitid %d: %m", c);
    if (getpgid(b) != a || getpgid(c) != a) fail("before: groups %d, %d, expected %d", getpgid(b), getpgid(c), a);
    test_daemon();
    test_waitsig();
    if (getpgid(c) != a) fail("zombie %d is in group %d, expected %d", c, getpgid(c), a);
    if (getpgid(b) != a) fail("live member %d is in group %d, expected %d", b, getpgid(b), a);
    if (kill(a, 0) == 0 || errno != ESRCH) fail("pid %d (the gone leader) exists after restore", a);
    if (kill(-a, SIGUSR1)) fail("kill(-%d): %m", a);
    if (waitpid(b, &st, 0) != b || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("live member: status %#x", st);
    if (waitpid(c, &st, WNOHANG) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 5) fail("zombie %d: status %#x, expected exit 5", c, st);
    return test_report();
}
