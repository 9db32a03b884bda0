// Datagram and seqpacket socketpairs keep their queued messages with their boundaries,
// in order, in both directions.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const size_t sizes[] = { 1, 700, 5000, 33, 60000 };
#define N (sizeof(sizes) / sizeof(sizes[0]))

static void fill(int fd, uint64_t seed) {
    static char buf[65536];
    for (size_t i = 0; i < N; i++) {
        datagen(buf, sizes[i], seed + i);
        if (send(fd, buf, sizes[i], 0) != (ssize_t)sizes[i]) fail("send %zu bytes: %m", sizes[i]);
    }
}

static void check(int fd, uint64_t seed, const char *what) {
    static char buf[70000];
    for (size_t i = 0; i < N; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n != (ssize_t)sizes[i]) { fail("%s: message %zu has %zd bytes (%m), expected %zu", what, i, n, sizes[i]); return; }
        if (datachk_fail(what, buf, n, seed + i)) return;
    }
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n != -1 || errno != EAGAIN) fail("%s: an extra message of %zd bytes", what, n);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int d[2], q[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, d) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q)) fail("socketpair: %m");
    int big = 1 << 20;
    for (int i = 0; i < 2; i++) {
        setsockopt(d[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        setsockopt(q[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    }
    fill(d[0], 100);
    fill(q[1], 200);
    if (send(q[0], "back", 4, 0) != 4) fail("send back: %m");
    test_daemon();
    test_waitsig();
    int type = 0;
    socklen_t len = sizeof(type);
    getsockopt(d[1], SOL_SOCKET, SO_TYPE, &type, &len);
    if (type != SOCK_DGRAM) fail("d[1] is of type %d, expected SOCK_DGRAM", type);
    getsockopt(q[0], SOL_SOCKET, SO_TYPE, &type, &len);
    if (type != SOCK_SEQPACKET) fail("q[0] is of type %d, expected SOCK_SEQPACKET", type);
    check(d[1], 100, "dgram d[0] -> d[1]");
    check(q[0], 200, "seqpacket q[1] -> q[0]");
    char buf[8] = { 0 };
    if (recv(q[1], buf, sizeof(buf), MSG_DONTWAIT) != 4 || memcmp(buf, "back", 4)) fail("seqpacket q[0] -> q[1] lost 'back'");
    if (send(d[1], "new", 3, 0) != 3 || recv(d[0], buf, sizeof(buf), MSG_DONTWAIT) != 3) fail("dgram pair does not carry new messages");
    return test_report();
}
