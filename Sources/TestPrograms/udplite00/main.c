// UDP-lite sockets (IPPROTO_UDPLITE) keep their protocol, bound address, connected peer and
// checksum coverage (UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV): after restore a datagram from
// the connected one reaches the bound one from the same port, and a receiver demanding more
// coverage than the sender gives still drops it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11

static int geti(int s, int opt) {
    int v = -1;
    socklen_t l = sizeof(v);
    if (getsockopt(s, IPPROTO_UDPLITE, opt, &v, &l)) fail("getsockopt(%d): %m", opt);
    return v;
}

static ssize_t recv_wait(int s, void *buf, size_t len, struct sockaddr_in *from) {
    socklen_t l = sizeof(*from);
    for (int i = 0; i < 50; i++) {
        ssize_t n = recvfrom(s, buf, len, MSG_DONTWAIT, (void *)from, &l);
        if (n >= 0 || errno != EAGAIN) return n;
        usleep(10000);
    }
    return -1;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) }, sa, ca;
    int srv = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE), cli = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
    int picky = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
    if (srv < 0 || cli < 0 || picky < 0) { fail("socket(UDP-lite): %m"); return test_report(); }
    if (bind(srv, (void *)&a, sizeof(a)) || bind(cli, (void *)&a, sizeof(a)) || bind(picky, (void *)&a, sizeof(a))) fail("bind: %m");
    socklen_t len = sizeof(sa);
    getsockname(srv, (void *)&sa, &len);
    len = sizeof(ca);
    getsockname(cli, (void *)&ca, &len);
    if (connect(cli, (void *)&sa, sizeof(sa))) fail("connect: %m");
    int cov = 20, want = 20, strict = 100;
    if (setsockopt(cli, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, &cov, 4) || setsockopt(srv, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, &want, 4) ||
        setsockopt(picky, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, &strict, 4)) fail("UDPLITE_*_CSCOV: %m");

    test_daemon();
    test_waitsig();

    int p = -1;
    len = sizeof(p);
    getsockopt(srv, SOL_SOCKET, SO_PROTOCOL, &p, &len);
    if (p != IPPROTO_UDPLITE) fail("protocol is %d, expected UDP-lite", p);
    if (geti(cli, UDPLITE_SEND_CSCOV) != cov) fail("UDPLITE_SEND_CSCOV is %d, expected %d", geti(cli, UDPLITE_SEND_CSCOV), cov);
    if (geti(srv, UDPLITE_RECV_CSCOV) != want) fail("UDPLITE_RECV_CSCOV is %d, expected %d", geti(srv, UDPLITE_RECV_CSCOV), want);
    if (geti(picky, UDPLITE_RECV_CSCOV) != strict) fail("UDPLITE_RECV_CSCOV is %d, expected %d", geti(picky, UDPLITE_RECV_CSCOV), strict);
    struct sockaddr_in now, from;
    len = sizeof(now);
    if (getsockname(srv, (void *)&now, &len) || now.sin_port != sa.sin_port) fail("server port %d, expected %d", ntohs(now.sin_port), ntohs(sa.sin_port));
    char buf[64] = { 0 };
    if (send(cli, "lite datagram", 13, 0) != 13) fail("send: %m");
    ssize_t n = recv_wait(srv, buf, sizeof(buf), &from);
    if (n != 13 || memcmp(buf, "lite datagram", 13)) fail("server got %zd bytes (%m)", n);
    else if (from.sin_port != ca.sin_port) fail("datagram from port %d, expected %d", ntohs(from.sin_port), ntohs(ca.sin_port));
    // Coverage 20 (8 header + 12 data) is less than the 100 the picky one demands: dropped.
    len = sizeof(now);
    getsockname(picky, (void *)&now, &len);
    if (sendto(cli, "short coverage", 14, 0, (void *)&now, sizeof(now)) != 14) fail("sendto: %m");
    if (recv_wait(picky, buf, sizeof(buf), &from) >= 0) fail("the picky socket accepted a datagram of coverage %d", cov);
    return test_report();
}
