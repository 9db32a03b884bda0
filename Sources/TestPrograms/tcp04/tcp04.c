// Closed TCP connections, IPv4 and IPv6, both ends in the tree: each end shut for writing and
// the FINs exchanged and acked, so both sockets are in CLOSE (the active closer's tuple in
// TIME_WAIT), one with bytes still unread. After restore each is still CLOSE, keeps its peer's
// address (SO_PEERNAME) and its own, reads the unread bytes and then EOF (not ENOTCONN), and a
// write fails with EPIPE.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct end { int fd; socklen_t alen; struct sockaddr_storage peer, self; const char *what, *unread; };

static void record(struct end *e) {
    e->alen = sizeof(e->peer);
    socklen_t l = e->alen;
    // The exact length, as SO_PEERNAME wants no more than the address.
    struct sockaddr_storage tmp; socklen_t tl = sizeof(tmp);
    if (getsockname(e->fd, (void *)&tmp, &tl)) fail("%s: getsockname: %m", e->what);
    e->alen = l = tl;
    memcpy(&e->self, &tmp, tl);
    if (getsockopt(e->fd, SOL_SOCKET, SO_PEERNAME, &e->peer, &l)) fail("%s: SO_PEERNAME: %m", e->what);
}

static void check(struct end *e) {
    if (tcp_state(e->fd) != TCP_CLOSE) fail("%s: TCP state %d, not CLOSE", e->what, tcp_state(e->fd));
    struct sockaddr_storage a; socklen_t l = e->alen;
    if (getsockopt(e->fd, SOL_SOCKET, SO_PEERNAME, &a, &l)) fail("%s: SO_PEERNAME after restore: %m", e->what);
    else if (memcmp(&a, &e->peer, e->alen)) fail("%s: the peer's address changed", e->what);
    l = e->alen;
    if (getsockname(e->fd, (void *)&a, &l) || memcmp(&a, &e->self, e->alen)) fail("%s: its own address changed", e->what);
    char buf[64] = {0};
    size_t n = strlen(e->unread);
    if (n) {
        ssize_t r = read(e->fd, buf, n);
        if (r != (ssize_t)n || memcmp(buf, e->unread, n)) fail("%s: read %zd (%m) \"%.*s\", not \"%s\"", e->what, r, (int)(r > 0 ? r : 0), buf, e->unread);
    }
    ssize_t r = read(e->fd, buf, sizeof(buf));
    if (r != 0) fail("%s: read %zd (%m) at the end, not EOF", e->what, r);
    errno = 0;
    if (write(e->fd, "x", 1) != -1 || errno != EPIPE) fail("%s: write after close: %m, not EPIPE", e->what);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct end ends[4];
    int fams[2] = { AF_INET, AF_INET6 };
    for (int i = 0; i < 2; i++) {
        int c, a;
        tcp_loopback_pair(fams[i], &c, &a);
        if (write(c, "unread by the acceptor", 22) != 22) fail("write: %m");
        if (shutdown(c, SHUT_WR)) fail("shutdown: %m");
        for (int k = 0; k < 500 && tcp_state(a) != TCP_CLOSE_WAIT; k++) usleep(2000);
        if (shutdown(a, SHUT_WR)) fail("shutdown: %m");
        for (int k = 0; k < 500 && (tcp_state(a) != TCP_CLOSE || tcp_state(c) != TCP_CLOSE); k++) usleep(2000);
        ends[2 * i] = (struct end){ .fd = c, .what = i ? "IPv6 connecting end" : "IPv4 connecting end", .unread = "" };
        ends[2 * i + 1] = (struct end){ .fd = a, .what = i ? "IPv6 accepted end" : "IPv4 accepted end", .unread = "unread by the acceptor" };
    }
    for (int i = 0; i < 4; i++) {
        if (tcp_state(ends[i].fd) != TCP_CLOSE) fail("%s: TCP state %d before the dump, not CLOSE", ends[i].what, tcp_state(ends[i].fd));
        record(&ends[i]);
    }
    test_daemon();
    test_waitsig();
    for (int i = 0; i < 4; i++) check(&ends[i]);
    return test_report();
}
