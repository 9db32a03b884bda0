// Both ends of an IPv6 loopback ([::1]) TCP connection in one process, each with unread data
// waiting for it (and so in the other's send queue), TCP_NODELAY on one end. After restore
// the addresses, the option and the data in flight are intact, and new data crosses both ways.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define C2S (96 << 10)
#define S2C (40 << 10)

static char cbuf[C2S], sbuf[S2C], in[C2S];

static int port(int s, int peer) {
    struct sockaddr_in6 a;
    socklen_t l = sizeof(a);
    if ((peer ? getpeername : getsockname)(s, (struct sockaddr *)&a, &l)) return -1;
    if (a.sin6_family != AF_INET6 || !IN6_IS_ADDR_LOOPBACK(&a.sin6_addr)) return -2;
    return ntohs(a.sin6_port);
}

// Sends all of buf without blocking forever: the peer is this process and reads later.
static size_t send_some(int fd, const char *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_DONTWAIT);
        if (n <= 0) break;
        off += n;
    }
    return off;
}

static void recv_check(int fd, size_t len, uint64_t seed, const char *what) {
    ssize_t n = recv(fd, in, len, MSG_WAITALL);
    if (n != (ssize_t)len) {
        fail("%s: got %zd of %zu bytes: %m", what, n, len);
        return;
    }
    datachk_fail(what, in, len, seed);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int one = 1;
    int ls = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t al = sizeof(a);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) || getsockname(ls, (struct sockaddr *)&a, &al)) fail("listen on ::1: %m");
    int c = socket(AF_INET6, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof(a))) fail("connect: %m");
    int s = accept(ls, NULL, NULL);
    if (s < 0) fail("accept: %m");
    close(ls);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int cport = port(c, 0), sport = port(s, 0);
    if (port(c, 1) != sport || port(s, 1) != cport) fail("the ends do not name each other");
    datagen(cbuf, C2S, 61);
    datagen(sbuf, S2C, 62);
    size_t c2s = send_some(c, cbuf, C2S), s2c = send_some(s, sbuf, S2C);
    if (c2s == 0 || s2c == 0) fail("nothing could be sent: %zu %zu", c2s, s2c);
    test_daemon();
    test_waitsig();

    if (port(c, 0) != cport || port(c, 1) != sport) fail("client addresses changed: %d -> %d", port(c, 0), port(c, 1));
    if (port(s, 0) != sport || port(s, 1) != cport) fail("server addresses changed: %d -> %d", port(s, 0), port(s, 1));
    int v = 0;
    socklen_t l = sizeof(v);
    if (getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &l) || !v) fail("TCP_NODELAY lost");
    l = sizeof(v);
    if (getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &l) || v) fail("TCP_NODELAY appeared on the other end");
    recv_check(s, c2s, 61, "client to server, in flight at dump");
    recv_check(c, s2c, 62, "server to client, in flight at dump");
    // The connection carries on: fresh data each way.
    datagen(cbuf, 8192, 63);
    datagen(sbuf, 8192, 64);
    if (send(c, cbuf, 8192, 0) != 8192 || send(s, sbuf, 8192, 0) != 8192) fail("send after restore: %m");
    recv_check(s, 8192, 63, "client to server, after restore");
    recv_check(c, 8192, 64, "server to client, after restore");
    test_msg("in flight at dump: %zu and %zu bytes\n", c2s, s2c);
    return test_report();
}
