#define _GNU_SOURCE
#include "CKernel.h"
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <grp.h>
#include <sys/time.h>
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

// posix_openpt and friends need _XOPEN_SOURCE, which Swift's Glibc module does not set.
int ck_open_pty(char *name, size_t len) {
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0) return -errno;
    if (grantpt(m) || unlockpt(m) || ptsname_r(m, name, len)) {
        int e = errno;
        close(m);
        return -e;
    }
    return m;
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
    // With CLONE_PARENT the kernel wants 0: the child signals its parent as cryo would.
    args.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
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

int ck_seqpacket_request_as(unsigned int uid, unsigned int gid, const void *addr, unsigned int addrlen,
                            const void *req, unsigned long reqlen) {
    pid_t p = fork();
    if (p < 0) return -errno;
    if (p == 0) {
        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) _exit(3);
        int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        if (s < 0) _exit(4);
        if (connect(s, (const struct sockaddr *)addr, addrlen) < 0) _exit(2);
        struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (send(s, req, reqlen, MSG_NOSIGNAL) < 0) _exit(errno == EPIPE || errno == ECONNRESET ? 1 : 4);
        char buf[256];
        ssize_t n = recv(s, buf, sizeof(buf), 0);
        if (n > 0) _exit(0);
        if (n == 0 || errno == ECONNRESET) _exit(1);
        _exit(4);
    }
    int st = 0;
    while (waitpid(p, &st, 0) < 0) if (errno != EINTR) return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

int ck_send_fds(int sock, const int *fds, int n) {
    if (n <= 0 || n > 253) return -EINVAL;
    char byte = 0;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(253 * sizeof(int))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof(u));
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = CMSG_SPACE(n * sizeof(int)) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    ssize_t r = sendmsg(sock, &m, MSG_NOSIGNAL);
    return r < 0 ? -errno : 0;
}

int ck_recv_fds(int sock, int *fds, int max) {
    if (max <= 0 || max > 253) return -EINVAL;
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(253 * sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = CMSG_SPACE(max * sizeof(int)) };
    ssize_t r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    if (r < 0) return -errno;
    if (m.msg_flags & MSG_CTRUNC) return -EMSGSIZE;
    int got = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (int i = 0; i < k && got < max; i++) memcpy(&fds[got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    return got;
}

long ck_peek(int sock, void *buf, unsigned long len, int extra, int *fds, int *nfds) {
    return ck_peek_from(sock, buf, len, extra, fds, nfds, NULL, NULL, NULL);
}

long ck_recv_with_fds(int sock, void *buf, unsigned long len, int *fds, int *nfds) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union { char buf[CMSG_SPACE(253 * sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    *nfds = 0;
    ssize_t r = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r < 0) return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (int i = 0; i < k && *nfds < 253; i++) memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    return r;
}

long ck_peek_from(int sock, void *buf, unsigned long len, int extra, int *fds, int *nfds,
                  void *name, unsigned int *namelen, int *msg) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union { char buf[CMSG_SPACE(253 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))]; struct cmsghdr align; } u;
    struct msghdr m = { .msg_name = name, .msg_namelen = namelen ? *namelen : 0, .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    *nfds = 0;
    if (msg) *msg = 0;
    ssize_t r = recvmsg(sock, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | extra);
    if (r < 0) return -errno;
    if (namelen) *namelen = m.msg_namelen;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && msg) *msg = 1;
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (int i = 0; i < k && *nfds < 253; i++) memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (m.msg_flags & MSG_CTRUNC) {
        // Some fds never arrived: the caller could not record the message faithfully.
        for (int i = 0; i < *nfds; i++) close(fds[i]);
        *nfds = 0;
        return -EMSGSIZE;
    }
    return r;
}

long ck_send_with_fds(int sock, const void *buf, unsigned long len, const int *fds, int n,
                      const void *addr, unsigned int addrlen, int flags) {
    if (n < 0 || n > 253) return -EINVAL;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { char buf[CMSG_SPACE(253 * sizeof(int))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof(u));
    struct msghdr m = { .msg_name = (void *)addr, .msg_namelen = addr ? addrlen : 0, .msg_iov = &iov, .msg_iovlen = 1 };
    if (n > 0) {
        m.msg_control = u.buf;
        m.msg_controllen = CMSG_SPACE(n * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    }
    ssize_t r = sendmsg(sock, &m, flags);
    return r < 0 ? -errno : r;
}
