// The root of a tree that lived in a time namespace: its offsets can be written only before
// any task enters the namespace, and setns back out of one needs a single-threaded caller.
// So a short-lived intermediate (forked from cryo, single-threaded) unshares CLONE_NEWTIME,
// writes the offsets, and clones the root as cryo's own child (CLONE_PARENT) into it.
#define _GNU_SOURCE
#include "CKernel.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static int put_num(char *b, long long v) {
    char rev[24];
    int n = 0, len = 0;
    if (v < 0) { b[len++] = '-'; v = -v; }
    do { rev[n++] = (char)('0' + v % 10); v /= 10; } while (v > 0);
    while (n > 0) b[len++] = rev[--n];
    return len;
}

pid_t ck_clone3_stopped_child_timens(pid_t want_pid, uint64_t flags, long long mono_s, long long mono_ns,
                                     long long boot_s, long long boot_ns) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -errno;
    pid_t mid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (mid < 0) { int e = errno; close(p[0]); close(p[1]); return -e; }
    if (mid == 0) {
        // Raw syscalls only: forked from a multithreaded Swift process.
        int r = 0;
        if (syscall(SYS_unshare, CLONE_NEWTIME) < 0) r = -errno;
        if (r == 0) {
            char b[160];
            int len = 0;
            memcpy(b + len, "monotonic ", 10); len += 10;
            len += put_num(b + len, mono_s); b[len++] = ' ';
            len += put_num(b + len, mono_ns); b[len++] = '\n';
            memcpy(b + len, "boottime ", 9); len += 9;
            len += put_num(b + len, boot_s); b[len++] = ' ';
            len += put_num(b + len, boot_ns); b[len++] = '\n';
            int fd = (int)syscall(SYS_open, "/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
            if (fd < 0) r = -errno;
            else {
                if (syscall(SYS_write, fd, b, len) != len) r = -errno;
                syscall(SYS_close, fd);
            }
        }
        if (r == 0) r = ck_clone3_stopped_child(want_pid, flags | CLONE_PARENT);
        syscall(SYS_write, p[1], &r, sizeof(r));
        syscall(SYS_exit_group, 0);
    }
    close(p[1]);
    int r = -EIO;
    ssize_t n;
    while ((n = read(p[0], &r, sizeof(r))) < 0 && errno == EINTR) {}
    close(p[0]);
    int st = 0;
    while (waitpid(mid, &st, 0) < 0 && errno == EINTR) {}
    if (n != sizeof(r)) return -EIO;
    return r;
}
