// Files in flight (SCM_RIGHTS) in unix socket queues across C/R: regular files (one also held,
// whose offset is shared; one closed after sending), pipe ends (with data in the pipe), a unix
// socket end (with its own queue), on a datagram and a stream socketpair. The stream keeps
// where the fds sit: a recv stops after the bytes that carry them. A child receives a file
// its parent also holds, and moves the shared offset.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void send_fds(int s, const char *data, size_t len, const int *fds, int n) {
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    union { char buf[CMSG_SPACE(8 * sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (n > 0) {
        m.msg_control = u.buf;
        m.msg_controllen = CMSG_SPACE(n * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    }
    if (sendmsg(s, &m, 0) != (ssize_t)len) fail("sendmsg '%.*s': %m", (int)len, data);
}

// One recvmsg: the bytes into buf (NUL-terminated), the fds into fds; returns the byte count.
static ssize_t recv_fds(int s, char *buf, size_t len, int *fds, int *n) {
    struct iovec iov = { .iov_base = buf, .iov_len = len - 1 };
    union { char buf[CMSG_SPACE(8 * sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    *n = 0;
    ssize_t r = recvmsg(s, &m, MSG_DONTWAIT);
    if (r < 0) return r;
    buf[r] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        memcpy(fds + *n, CMSG_DATA(c), k * sizeof(int));
        *n += k;
    }
    return r;
}

static int make_file(const char *name, char fill, off_t pos) {
    int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("open %s: %m", name);
    char b[4096];
    memset(b, fill, sizeof(b));
    if (write(fd, b, sizeof(b)) != sizeof(b)) fail("write %s: %m", name);
    if (lseek(fd, pos, SEEK_SET) != pos) fail("lseek %s: %m", name);
    return fd;
}

// The received fd is file `name` at offset `pos`, and reads `fill` there.
static void check_file(const char *what, int fd, const char *name, off_t pos, char fill) {
    struct stat a, b;
    if (fstat(fd, &a) || stat(name, &b) || a.st_ino != b.st_ino) { fail("%s: not %s", what, name); return; }
    off_t at = lseek(fd, 0, SEEK_CUR);
    if (at != pos) { fail("%s: offset %ld, expected %ld", what, (long)at, (long)pos); return; }
    char c = 0;
    if (pread(fd, &c, 1, pos) != 1 || c != fill) fail("%s: reads '%c', expected '%c'", what, c, fill);
}

static int expect(const char *what, int s, const char *data, int nfds, int *fds) {
    char buf[256];
    int n = 0;
    ssize_t r = recv_fds(s, buf, sizeof(buf), fds, &n);
    if (r < 0) { fail("%s: recvmsg: %m", what); return -1; }
    if ((size_t)r != strlen(data) || memcmp(buf, data, r)) { fail("%s: got '%s', expected '%s'", what, buf, data); return -1; }
    if (n != nfds) { fail("%s: %d fds, expected %d", what, n, nfds); return -1; }
    return 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int d[2], s[2], c[2], u[2], pa[2], pb[2], pc[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, d) || socketpair(AF_UNIX, SOCK_STREAM, 0, s) || socketpair(AF_UNIX, SOCK_DGRAM, 0, c)
        || socketpair(AF_UNIX, SOCK_STREAM, 0, u))
        fail("socketpair: %m");
    if (pipe(pa) || pipe(pb) || pipe(pc)) fail("pipe: %m");

    // Datagrams: a file also held here (shared offset), a file closed after sending, and the
    // read end of a pipe with data whose ends are both closed here (data, then EOF).
    int kept = make_file("unix03.kept", 'k', 123);
    int gone = make_file("unix03.gone", 'g', 77);
    if (write(pa[1], "pipe data", 9) != 9) fail("write pipe: %m");
    int m1[2] = { kept, gone };
    send_fds(d[0], "files", 5, m1, 2);
    close(gone);
    send_fds(d[0], "pipe", 4, &pa[0], 1);
    close(pa[0]);
    close(pa[1]);
    // The write end of a pipe whose read end stays here, and a unix socket end (u[0], with
    // a message queued to it) whose peer stays here.
    if (send(u[1], "to u0", 5, 0) != 5) fail("send u: %m");
    int m2[2] = { pb[1], u[0] };
    send_fds(d[0], "ends", 4, m2, 2);
    close(pb[1]);
    close(u[0]);

    // A stream: plain bytes, bytes with a file, plain bytes, bytes with a pipe end.
    int third = make_file("unix03.stream", 's', 9);
    if (send(s[0], "AAAA", 4, 0) != 4) fail("send: %m");
    send_fds(s[0], "BBBB", 4, &third, 1);
    close(third);
    if (send(s[0], "CCCC", 4, 0) != 4) fail("send: %m");
    if (write(pc[1], "second pipe", 11) != 11) fail("write pipe: %m");
    send_fds(s[0], "DD", 2, &pc[0], 1);
    close(pc[0]);
    close(pc[1]);
    if (send(s[0], "EEE", 3, 0) != 3) fail("send: %m");

    // A child that receives a file the parent holds (both inherit the pair).
    int shared = make_file("unix03.shared", 'h', 300);
    pid_t child = test_fork();
    if (child < 0) fail("fork: %m");
    if (child == 0) {
        // Before test_daemon, fail() would exit through the launcher's path: exit codes only.
        test_waitsig();
        int fds[8], n = 0;
        char buf[64];
        if (recv_fds(c[1], buf, sizeof(buf), fds, &n) != 6 || strcmp(buf, "shared") || n != 1) _exit(1);
        off_t at = lseek(fds[0], 0, SEEK_CUR);
        if (at != 300) _exit(2);
        if (lseek(fds[0], 555, SEEK_SET) != 555) _exit(3);
        if (lseek(shared, 0, SEEK_CUR) != 555) _exit(4);  // its inherited copy: the same file
        _exit(0);
    }
    send_fds(c[0], "shared", 6, &shared, 1);

    test_daemon();
    test_waitsig();

    int fds[8], n;
    char buf[256];
    // Datagrams, in order.
    if (!expect("dgram 1", d[1], "files", 2, fds)) {
        check_file("kept file", fds[0], "unix03.kept", 123, 'k');
        if (lseek(fds[0], 2000, SEEK_SET) != 2000 || lseek(kept, 0, SEEK_CUR) != 2000)
            fail("the file in flight and the one kept do not share their offset (kept at %ld)", (long)lseek(kept, 0, SEEK_CUR));
        check_file("closed file", fds[1], "unix03.gone", 77, 'g');
    }
    if (!expect("dgram 2", d[1], "pipe", 1, fds)) {
        ssize_t r = read(fds[0], buf, sizeof(buf));
        if (r != 9 || memcmp(buf, "pipe data", 9)) fail("pipe in flight: read %zd bytes, expected 'pipe data'", r);
        else if ((r = read(fds[0], buf, sizeof(buf))) != 0) fail("pipe in flight: %zd after its data, expected EOF", r);
    }
    if (!expect("dgram 3", d[1], "ends", 2, fds)) {
        if (write(fds[0], "back", 4) != 4) fail("write end in flight: %m");
        else if (read(pb[0], buf, sizeof(buf)) != 4 || memcmp(buf, "back", 4)) fail("the pipe's write end in flight does not reach its read end");
        int us = fds[1];
        n = recv(us, buf, sizeof(buf), MSG_DONTWAIT);
        if (n != 5 || memcmp(buf, "to u0", 5)) fail("socket in flight: its queue holds %d bytes, expected 'to u0'", n);
        if (send(us, "ping", 4, 0) != 4 || recv(u[1], buf, sizeof(buf), MSG_DONTWAIT) != 4 || memcmp(buf, "ping", 4))
            fail("the socket in flight is not connected to its peer");
    }
    if (recv(d[1], buf, sizeof(buf), MSG_DONTWAIT) >= 0 || errno != EAGAIN) fail("more datagrams than sent");

    // The stream: each recv stops after the bytes that carry fds.
    if (!expect("stream 1", s[1], "AAAABBBB", 1, fds)) check_file("stream file", fds[0], "unix03.stream", 9, 's');
    if (!expect("stream 2", s[1], "CCCCDD", 1, fds)) {
        ssize_t r = read(fds[0], buf, sizeof(buf));
        if (r != 11 || memcmp(buf, "second pipe", 11)) fail("stream pipe: read %zd bytes, expected 'second pipe'", r);
    }
    expect("stream 3", s[1], "EEE", 0, fds);

    kill(child, SIGTERM);
    int st = 0;
    if (waitpid(child, &st, 0) != child) fail("waitpid: %m");
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child: status %#x (1: message, 2: offset, 3: seek, 4: not its file)", st);
    else if (lseek(shared, 0, SEEK_CUR) != 555) fail("the child's file in flight is not the parent's (parent at %ld)", (long)lseek(shared, 0, SEEK_CUR));
    unlink("unix03.kept");
    unlink("unix03.gone");
    unlink("unix03.stream");
    unlink("unix03.shared");
    return test_report();
}
