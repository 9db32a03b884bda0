// UDP sockets on loopback keep their bound addresses and connected peers: a connected
// socket still sends to its peer, from its own bound port. An IPv6 socket bound to ::1 (when
// the host has IPv6) keeps its address and port.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    int srv = socket(AF_INET, SOCK_DGRAM, 0), cli = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) }, sa, ca;
    if (bind(srv, (void *)&a, sizeof(a)) || bind(cli, (void *)&a, sizeof(a))) fail("bind: %m");
    socklen_t len = sizeof(sa);
    getsockname(srv, (void *)&sa, &len);
    len = sizeof(ca);
    getsockname(cli, (void *)&ca, &len);
    if (connect(cli, (void *)&sa, sizeof(sa))) fail("connect: %m");
    fcntl(srv, F_SETFL, O_NONBLOCK);
    int v6 = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT }, s6;
    if (v6 >= 0 && bind(v6, (void *)&a6, sizeof(a6))) { close(v6); v6 = -1; }  // no IPv6 here
    if (v6 >= 0) {
        len = sizeof(s6);
        getsockname(v6, (void *)&s6, &len);
    }
    test_daemon();
    test_waitsig();
    struct sockaddr_in now, from;
    len = sizeof(now);
    if (getsockname(srv, (void *)&now, &len) || now.sin_port != sa.sin_port || now.sin_addr.s_addr != sa.sin_addr.s_addr)
        fail("server bound to port %d, expected %d", ntohs(now.sin_port), ntohs(sa.sin_port));
    len = sizeof(now);
    if (getpeername(cli, (void *)&now, &len) || now.sin_port != sa.sin_port) fail("client is not connected to the server port (%m)");
    if (send(cli, "datagram", 8, 0) != 8) fail("send: %m");
    char buf[16] = { 0 };
    len = sizeof(from);
    usleep(10000);
    ssize_t n = recvfrom(srv, buf, sizeof(buf), 0, (void *)&from, &len);
    if (n != 8 || memcmp(buf, "datagram", 8)) fail("server got %zd bytes (%m), expected 'datagram'", n);
    else if (from.sin_port != ca.sin_port) fail("datagram came from port %d, expected the client's %d", ntohs(from.sin_port), ntohs(ca.sin_port));
    if (!(fcntl(srv, F_GETFL) & O_NONBLOCK)) fail("server lost O_NONBLOCK");
    if (v6 >= 0) {
        struct sockaddr_in6 n6;
        len = sizeof(n6);
        if (getsockname(v6, (void *)&n6, &len) || n6.sin6_port != s6.sin6_port || memcmp(&n6.sin6_addr, &in6addr_loopback, 16))
            fail("IPv6 socket bound to port %d, expected [::1]:%d", ntohs(n6.sin6_port), ntohs(s6.sin6_port));
    }
    return test_report();
}
