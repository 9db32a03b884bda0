// A session leader whose controlling terminal is a pty it has no fd open on (CRIU's tty00):
// the master is held by its parent. After restore the terminal must still be the leader's
// (same tty_nr in /proc/self/stat), and the master's close must hang it up: SIGHUP to the
// leader.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t hup;
static void on_hup(int s) { (void)s; hup = 1; }

static long tty_nr(void) {
    char b[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f || !fgets(b, sizeof(b), f)) { if (f) fclose(f); return -1; }
    fclose(f);
    char *p = strrchr(b, ')');
    long v = -1;
    // state ppid pgrp session tty_nr
    if (p) sscanf(p + 2, "%*c %*d %*d %*d %ld", &v);
    return v;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) { fail("ptmx: %m"); return test_report(); }
    char name[64];
    snprintf(name, sizeof(name), "%s", ptsname(m));
    int ready[2];
    if (pipe(ready)) fail("pipe: %m");
    pid_t c = test_fork();
    if (c == 0) {
        close(m);
        close(ready[0]);
        signal(SIGHUP, on_hup);
        if (setsid() < 0) _exit(2);
        int s = open(name, O_RDWR);  // a session leader without a terminal takes this one
        if (s < 0) _exit(3);
        close(s);
        long before = tty_nr();
        if (before <= 0) _exit(4);
        char one = 1;
        if (write(ready[1], &one, 1) != 1) _exit(5);
        close(ready[1]);
        test_waitsig();
        if (tty_nr() != before) _exit(6);  // no longer its controlling terminal
        for (int i = 0; i < 3000 && !hup; i++) usleep(1000);
        _exit(hup ? 0 : 7);
    }
    close(ready[1]);
    char one;
    if (read(ready[0], &one, 1) != 1) fail("the child could not take %s as its terminal", name);
    close(ready[0]);
    test_daemon();
    test_waitsig();
    kill(c, SIGTERM);
    usleep(100000);
    close(m);  // hangs the terminal up: SIGHUP to its session leader
    int st;
    if (waitpid(c, &st, 0) != c) fail("waitpid: %m");
    else if (!WIFEXITED(st)) fail("the child died of signal %d", WTERMSIG(st));
    else if (WEXITSTATUS(st) == 6) fail("%s is no longer the session's controlling terminal after restore", name);
    else if (WEXITSTATUS(st) == 7) fail("closing the master of %s sent no SIGHUP to the session leader", name);
    else if (WEXITSTATUS(st)) fail("the child failed with %d", WEXITSTATUS(st));
    return test_report();
}
