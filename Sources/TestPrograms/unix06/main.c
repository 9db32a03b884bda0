// Queues CRIU's scm09, socket_close_data and sockets0[12]-seqpacket leave behind:
// - a datagram socketpair whose sender was closed, with a datagram and a datagram carrying a
//   pipe end queued: the reader gets them in order, from an unnamed sender (no address), and
//   the pipe still works;
// - a seqpacket socketpair with zero-length packets between others, both ways (they must
//   survive snapshots too: the kernel shows one to a single peek), and a datagram one;
// - a seqpacket socketpair whose peer closed after sending: its packet, then end-of-file.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int send_fd(int s, const char *msg, int fd) {
    char c[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { (void *)msg, strlen(msg) };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof(c) };
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof(int));
    return sendmsg(s, &m, 0) == (ssize_t)strlen(msg) ? 0 : -1;
}

// One message: its bytes must be `want` and, for a datagram, the sender unnamed.
static int expect(int s, const char *want, const char *what, int *fd) {
    char buf[64], c[CMSG_SPACE(sizeof(int))];
    struct sockaddr_un from;
    struct iovec iov = { buf, sizeof(buf) };
    struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof(c) };
    ssize_t n = recvmsg(s, &m, MSG_DONTWAIT);
    if (n != (ssize_t)strlen(want) || memcmp(buf, want, n)) { fail("%s: got %zd bytes '%.*s' (%s), expected '%s'", what, n, (int)(n > 0 ? n : 0), buf, n < 0 ? strerror(errno) : "", want); return -1; }
    if (m.msg_namelen != 0) { fail("%s: sender address of %u bytes, expected none", what, m.msg_namelen); return -1; }
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    if (fd) {
        if (!h || h->cmsg_type != SCM_RIGHTS) { fail("%s: no fd came with it", what); return -1; }
        memcpy(fd, CMSG_DATA(h), sizeof(int));
    } else if (h) { fail("%s: unexpected control data", what); return -1; }
    return 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int d[2], q[2], e[2], p[2], g[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, d) || socketpair(AF_UNIX, SOCK_DGRAM, 0, g) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, e) || pipe(p))
        fail("setup: %m");
    // The sender goes away: nothing is left to send these again but cryo.
    if (send(d[1], "hello", 5, 0) != 5 || send_fd(d[1], "fd", p[0])) fail("dgram sends: %m");
    close(d[1]);
    close(p[0]);
    if (send(q[1], "a", 1, 0) != 1 || send(q[1], "", 0, 0) != 0 || send(q[1], "bb", 2, 0) != 2 || send(q[1], "", 0, 0) != 0) fail("seqpacket sends: %m");
    if (send(q[0], "", 0, 0) != 0 || send(q[0], "x", 1, 0) != 1) fail("seqpacket sends back: %m");
    if (send(e[1], "z", 1, 0) != 1) fail("seqpacket send before close: %m");
    if (send(g[0], "", 0, 0) != 0 || send(g[0], "y", 1, 0) != 1) fail("dgram pair sends: %m");
    close(e[1]);
    test_daemon();
    test_waitsig();
    int got = -1;
    if (!expect(d[0], "hello", "dgram 1", NULL) && !expect(d[0], "fd", "dgram 2", &got)) {
        if (write(p[1], "pipe", 4) != 4) fail("pipe write: %m");
        char b[8] = { 0 };
        if (read(got, b, sizeof(b)) != 4 || memcmp(b, "pipe", 4)) fail("the pipe end in flight reads '%s'", b);
    }
    char b[4];
    if (recv(d[0], b, sizeof(b), MSG_DONTWAIT) != -1 || errno != EAGAIN) fail("dgram: more than was queued");
    expect(q[0], "a", "seqpacket 1", NULL);
    expect(q[0], "", "seqpacket 2 (zero-length)", NULL);
    expect(q[0], "bb", "seqpacket 3", NULL);
    expect(q[0], "", "seqpacket 4 (zero-length)", NULL);
    if (recv(q[0], b, sizeof(b), MSG_DONTWAIT) != -1 || errno != EAGAIN) fail("seqpacket: more than was queued");
    expect(q[1], "", "seqpacket back 1 (zero-length)", NULL);
    expect(q[1], "x", "seqpacket back 2", NULL);
    expect(e[0], "z", "closed peer", NULL);
    expect(g[1], "", "dgram pair 1 (zero-length)", NULL);
    expect(g[1], "y", "dgram pair 2", NULL);
    if (recv(e[0], b, sizeof(b), MSG_DONTWAIT) != 0) fail("closed peer: no end-of-file after the queue");
    return test_report();
}
