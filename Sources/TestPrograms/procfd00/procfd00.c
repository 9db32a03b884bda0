// fds of files under /proc/PID of the tree's own tasks: a parent's of its child's stat, and
// its own status. After restore they read the same tasks (in a pid namespace too, where cryo
// sees other pids).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static long pid_in(int fd) {
    char buf[512];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strstr(buf, "Pid:");
    return p ? atol(p + 4) : atol(buf);  // status: "Pid:\tN"; stat: "N (comm) ..."
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    pid_t child = test_fork();
    if (child == 0) { test_waitsig(); _exit(0); }
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/stat", child);
    int cs = open(p, O_RDONLY);
    int me = open("/proc/self/status", O_RDONLY);
    if (cs < 0 || me < 0) fail("open /proc files: %m");
    if (pid_in(cs) != child || pid_in(me) != getpid()) fail("set-up: /proc files read %ld and %ld", pid_in(cs), pid_in(me));

    test_daemon();
    test_waitsig();

    if (pid_in(cs) != child) fail("the child's /proc stat reads pid %ld, not %d", pid_in(cs), child);
    if (pid_in(me) != getpid()) fail("own /proc status reads pid %ld, not %d", pid_in(me), getpid());
    kill(child, SIGTERM);
    int st;
    waitpid(child, &st, 0);
    return test_report();
}
