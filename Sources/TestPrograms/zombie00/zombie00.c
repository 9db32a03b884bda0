// Zombies: children that exited (with codes 0 and 7) or were killed (SIGKILL, SIGUSR1) and
// were never reaped, next to a live child. After restore they are still zombies with the same
// pids, and waitpid gives each one's exact status.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char state_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] ? p[2] : '?';
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    const int codes[2] = { 0, 7 };
    const int sigs[2] = { SIGKILL, SIGUSR1 };  // no core-dumping signal: core_pattern may run a helper
    pid_t z[4];
    for (int i = 0; i < 2; i++) {
        z[i] = test_fork();
        if (z[i] == 0) _exit(codes[i]);
    }
    for (int i = 0; i < 2; i++) {
        z[2 + i] = test_fork();
        if (z[2 + i] == 0) { for (;;) pause(); }
        kill(z[2 + i], sigs[i]);
    }
    pid_t live = test_fork();
    if (live == 0) {
        test_waitsig();
        _exit(33);
    }
    for (int i = 0; i < 4; i++) {
        siginfo_t si;
        if (waitid(P_PID, z[i], &si, WEXITED | WNOWAIT)) fail("waitid %d: %m", z[i]);
    }
    test_daemon();
    test_waitsig();
    for (int i = 0; i < 4; i++)
        if (state_of(z[i]) != 'Z') fail("child %d is in state '%c', expected a zombie", z[i], state_of(z[i]));
    for (int i = 0; i < 4; i++) {
        int st;
        if (waitpid(z[i], &st, WNOHANG) != z[i]) { fail("zombie %d cannot be reaped", z[i]); continue; }
        if (i < 2 && !(WIFEXITED(st) && WEXITSTATUS(st) == codes[i]))
            fail("zombie %d: status %#x, expected exit %d", z[i], st, codes[i]);
        if (i >= 2 && !(WIFSIGNALED(st) && WTERMSIG(st) == sigs[i - 2]))
            fail("zombie %d: status %#x, expected death by signal %d", z[i], st, sigs[i - 2]);
    }
    kill(live, SIGTERM);
    int st;
    if (waitpid(live, &st, 0) != live || !WIFEXITED(st) || WEXITSTATUS(st) != 33) fail("live child: status %#x", st);
    return test_report();
}
