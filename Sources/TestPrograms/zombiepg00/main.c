// Zombies keep their session and process group: one child made its own session, another
// its own process group, a third joined that group; all three exit and stay unreaped.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child(int how, pid_t group, int fds[2]) {
    pid_t p = test_fork();
    if (p < 0) fail("fork: %m");
    if (p == 0) {
        if (how == 0) setsid();
        else if (how == 1) setpgid(0, 0);
        else setpgid(0, group);
        char c = 1;
        if (write(fds[1], &c, 1) != 1) _exit(3);
        _exit(10 + how);
    }
    char c;
    if (read(fds[0], &c, 1) != 1) fail("child %d did not start", how);
    return p;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int fds[2];
    if (pipe(fds)) fail("pipe: %m");
    pid_t s = child(0, 0, fds), g = child(1, 0, fds), m = child(2, g, fds);
    close(fds[0]);
    close(fds[1]);
    siginfo_t si;
    pid_t kids[3] = { s, g, m };
    for (int i = 0; i < 3; i++)
        if (waitid(P_PID, kids[i], &si, WEXITED | WNOWAIT)) fail("waitid %d: %m", kids[i]);
    pid_t want_sid[3] = { s, getsid(0), getsid(0) }, want_pg[3] = { s, g, g };
    for (int i = 0; i < 3; i++)
        if (getsid(kids[i]) != want_sid[i] || getpgid(kids[i]) != want_pg[i]) fail("set-up: zombie %d in session %d group %d", kids[i], getsid(kids[i]), getpgid(kids[i]));
    test_daemon();
    test_waitsig();
    for (int i = 0; i < 3; i++) {
        if (getsid(kids[i]) != want_sid[i]) fail("zombie %d in session %d, was %d", kids[i], getsid(kids[i]), want_sid[i]);
        if (getpgid(kids[i]) != want_pg[i]) fail("zombie %d in process group %d, was %d", kids[i], getpgid(kids[i]), want_pg[i]);
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 10 + i) fail("zombie %d: exit status 0x%x", kids[i], st);
    }
    return test_report();
}
