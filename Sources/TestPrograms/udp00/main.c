// UDP sockets on loopback keep their bound addresses and connected peers: a connected
// socket still sends to its peer, from its own bound port.
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
    return test_report();
}
