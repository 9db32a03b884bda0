#define _GNU_SOURCE
#include "CKernel.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <unistd.h>

long ck_ptrace(long request, pid_t pid, void *addr, void *data) {
    return ptrace((enum __ptrace_request)request, pid, addr, data);
}
long ck_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    return syscall(nr, a1, a2, a3, a4, a5, a6);
}
int ck_ioctl(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
int ck_ioctl_long(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }
int ck_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5) {
    return prctl(option, a2, a3, a4, a5);
}
int ck_fcntl_int(int fd, int cmd, int arg) { return fcntl(fd, cmd, arg); }
int ck_open(const char *path, int flags, unsigned int mode) { return open(path, flags, mode); }
int ck_errno(void) { return errno; }
int ck_spawn_addclosefrom(posix_spawn_file_actions_t *fa, int from) {
    return posix_spawn_file_actions_addclosefrom_np(fa, from);
}
int ck_spawn_addchdir(posix_spawn_file_actions_t *fa, const char *path) {
    return posix_spawn_file_actions_addchdir_np(fa, path);
}

int ck_wifexited(int s) { return WIFEXITED(s); }
int ck_wexitstatus(int s) { return WEXITSTATUS(s); }
int ck_wifsignaled(int s) { return WIFSIGNALED(s); }
int ck_wtermsig(int s) { return WTERMSIG(s); }
int ck_wifstopped(int s) { return WIFSTOPPED(s); }
int ck_wstopsig(int s) { return WSTOPSIG(s); }
int ck_wptrace_event(int s) { return (s >> 16) & 0xff; }

pid_t ck_clone3_stopped_child(pid_t want_pid, uint64_t flags) {
    pid_t tid[1] = { want_pid };
    struct ck_clone_args args = {0};
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    if (want_pid > 0) {
        args.set_tid = (uint64_t)(uintptr_t)tid;
        args.set_tid_size = 1;
    }
    long r = syscall(SYS_clone3, &args, sizeof(args));
    if (r < 0) return -errno;
    if (r == 0) {
        // Child: raw syscalls only, no libc state that a Swift parent may hold locked. It
        // waits in pause() to be seized; no signal of its own, which would race the tracer.
        for (;;) syscall(SYS_pause);
    }
    return (pid_t)r;
}

int ck_try_unshare(int flags) {
    pid_t p = fork();
    if (p < 0) return -errno;
    if (p == 0) {
        if (unshare(flags) < 0) _exit(errno & 0xff);
        _exit(0);
    }
    int st = 0;
    if (waitpid(p, &st, 0) < 0) return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}
