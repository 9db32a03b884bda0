// pidfds of processes of the tree come back as handles on the same processes: one of a
// child (blocking), one of itself and one of a second child (PIDFD_NONBLOCK), the second
// child's shared with the first child through fork. After SIGTERM: each fd is still a pidfd
// of its pid (fdinfo), poll says the children are alive, pidfd_send_signal through it ends
// the right child, poll then wakes, and waitid(P_PIDFD) collects the status it exited with.
// Two pidfds (two descriptions) of a child reaped before the dump stay pidfds of one dead
// process: Pid -1, one inode, readable, and a signal through them finds no one.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }
static int pidfd_send_signal(int fd, int sig) { return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0); }

// The pid fdinfo shows for `fd`, or 0.
static pid_t fdinfoPid(int fd) {
    char path[64], line[128];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    pid_t pid = 0;
    while (f && fgets(line, sizeof(line), f)) sscanf(line, "Pid: %d", &pid);
    if (f) fclose(f);
    return pid;
}

static int readable(int fd) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static pid_t child(int code) {
    pid_t pid = test_fork();
    if (pid == 0) {
        signal(SIGUSR1, SIG_DFL);
        for (;;) pause();  // ended by SIGUSR1 through its pidfd
        _exit(code);
    }
    return pid;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    pid_t a = child(0), b = child(0);
    int pa = pidfd_open(a, 0), pb = pidfd_open(b, PIDFD_NONBLOCK), self = pidfd_open(getpid(), PIDFD_NONBLOCK);
    if (pa < 0 || pb < 0 || self < 0) fail("pidfd_open: %m");
    // A third child holds the second child's pidfd too (one description, two processes).
    pid_t holder = test_fork();
    if (holder == 0) {
        test_waitsig();
        _exit(fdinfoPid(pb) == b ? 0 : 1);
    }
    pid_t gone = test_fork();
    if (gone == 0) _exit(0);
    int d1 = pidfd_open(gone, 0), d2 = pidfd_open(gone, PIDFD_NONBLOCK);
    if (d1 < 0 || d2 < 0) fail("pidfd_open of an exited child: %m");
    int st;
    if (waitpid(gone, &st, 0) != gone) fail("waitpid: %m");
    test_daemon();
    test_waitsig();

    struct stat s1, s2;
    if (fstat(d1, &s1) || fstat(d2, &s2) || s1.st_ino != s2.st_ino) fail("the two pidfds of the reaped child name different processes");
    if (fdinfoPid(d1) != -1 || fdinfoPid(d2) != -1) fail("a pidfd of the reaped child names pid %d/%d, not -1", fdinfoPid(d1), fdinfoPid(d2));
    if (!readable(d1)) fail("poll on the pidfd of the reaped child does not say it exited");
    if (pidfd_send_signal(d2, 0) == 0 || errno != ESRCH) fail("a signal through the pidfd of the reaped child: %m, not ESRCH");
    if (!(fcntl(d2, F_GETFL) & O_NONBLOCK)) fail("the PIDFD_NONBLOCK pidfd of the reaped child lost O_NONBLOCK");

    if (fdinfoPid(pa) != a) fail("fd %d is a pidfd of %d, expected %d", pa, fdinfoPid(pa), a);
    if (fdinfoPid(pb) != b) fail("fd %d is a pidfd of %d, expected %d", pb, fdinfoPid(pb), b);
    if (fdinfoPid(self) != getpid()) fail("fd %d is a pidfd of %d, expected itself %d", self, fdinfoPid(self), getpid());
    if (fcntl(pa, F_GETFL) & O_NONBLOCK) fail("the blocking pidfd came back O_NONBLOCK");
    if (!(fcntl(pb, F_GETFL) & O_NONBLOCK)) fail("the PIDFD_NONBLOCK pidfd lost O_NONBLOCK");
    if (readable(pa) || readable(pb)) fail("poll says a live child has exited");
    kill(holder, SIGTERM);
    if (waitpid(holder, &st, 0) != holder || !WIFEXITED(st) || WEXITSTATUS(st)) fail("the child sharing the pidfd saw another pid (status %#x)", st);
    int fds[2] = { pa, pb };
    pid_t pids[2] = { a, b };
    for (int i = 0; i < 2; i++) {
        if (pidfd_send_signal(fds[i], SIGUSR1)) { fail("pidfd_send_signal: %m"); continue; }
        struct pollfd p = { .fd = fds[i], .events = POLLIN };
        if (poll(&p, 1, 5000) != 1) fail("poll on the pidfd of %d did not wake when it exited", pids[i]);
        siginfo_t si = { 0 };
        if (waitid(P_PIDFD, fds[i], &si, WEXITED)) fail("waitid(P_PIDFD) of %d: %m", pids[i]);
        else if (si.si_pid != pids[i] || si.si_code != CLD_KILLED || si.si_status != SIGUSR1)
            fail("waitid(P_PIDFD): pid %d code %d status %d, expected %d killed by SIGUSR1", si.si_pid, si.si_code, si.si_status, pids[i]);
    }
    return test_report();
}
