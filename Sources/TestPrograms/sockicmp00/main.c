// ICMP "ping" sockets keep their ident (bound port), address, connected peer, options and
// shutdown state, and still work: after restore an echo request to 127.0.0.1 (and ::1 when
// there is IPv6) gets its reply, with the same ident. An unbound one stays unbound; a
// connected one shut for sending gets EPIPE. Ping sockets need net.ipv4.ping_group_range to
// allow the gid: when it does not, it is widened only inside a network namespace other than
// the host's (the ns flavour's).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define INIT_NET_INO 0xEFFFFFF9u

static int ping_socket(int family) {
    int s = socket(family, SOCK_DGRAM, family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6);
    if (s >= 0 || errno != EACCES || family != AF_INET) return s;
    struct stat st;
    if (stat("/proc/self/ns/net", &st) || st.st_ino == INIT_NET_INO) {
        fail("ping sockets are not allowed for gid %d by the host's net.ipv4.ping_group_range", getegid());
        return -1;
    }
    FILE *f = fopen("/proc/sys/net/ipv4/ping_group_range", "w");
    if (!f || fprintf(f, "0 2147483647\n") < 0 || fclose(f)) fail("widening ping_group_range in our netns: %m");
    return socket(family, SOCK_DGRAM, IPPROTO_ICMP);
}

static int geti(int s, int level, int opt) {
    int v = -12345;
    socklen_t l = sizeof(v);
    if (getsockopt(s, level, opt, &v, &l)) fail("getsockopt(%d, %d): %m", level, opt);
    return v;
}

// Sends an echo request with `seq` to `to`; checks the reply carries the ident and payload.
static void echo(int s, const char *what, void *to, socklen_t tolen, int v6, int ident, int seq) {
    unsigned char pkt[64] = { 0 }, rep[128];
    pkt[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
    pkt[6] = seq >> 8; pkt[7] = seq & 0xff;
    memcpy(pkt + 8, "cryo ping payload", 17);
    if (sendto(s, pkt, sizeof(pkt), 0, to, tolen) != sizeof(pkt)) { fail("%s: sendto: %m", what); return; }
    ssize_t n = recv(s, rep, sizeof(rep), 0);
    if (n != sizeof(pkt)) { fail("%s: reply of %zd bytes (%m), expected %zu", what, n, sizeof(pkt)); return; }
    int id = ((unsigned char)rep[4] << 8) | (unsigned char)rep[5];
    if (rep[0] != (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY) || id != ident || memcmp(rep + 8, "cryo ping payload", 17))
        fail("%s: got type %d ident %d, expected an echo reply to ident %d", what, rep[0], id, ident);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) }, a;
    struct timeval tv = { .tv_sec = 2 };
    int p = ping_socket(AF_INET), c = ping_socket(AF_INET), u = ping_socket(AF_INET);
    if (p < 0 || c < 0 || u < 0) { fail("ping socket: %m"); return test_report(); }
    if (bind(p, (void *)&lo, sizeof(lo)) || setsockopt(p, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))) fail("bind: %m");
    int ttl = 33;
    if (setsockopt(p, IPPROTO_IP, IP_TTL, &ttl, 4)) fail("IP_TTL: %m");
    socklen_t len = sizeof(a);
    getsockname(p, (void *)&a, &len);
    int ident = ntohs(a.sin_port);
    if (connect(c, (void *)&lo, sizeof(lo)) || shutdown(c, SHUT_WR)) fail("connect/shutdown: %m");
    fcntl(u, F_SETFL, O_NONBLOCK);

    struct sockaddr_in6 lo6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT }, a6;
    int p6 = ping_socket(AF_INET6), ident6 = 0;
    if (p6 >= 0 && bind(p6, (void *)&lo6, sizeof(lo6))) { close(p6); p6 = -1; }  // no IPv6 here
    if (p6 >= 0) {
        setsockopt(p6, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        len = sizeof(a6);
        getsockname(p6, (void *)&a6, &len);
        ident6 = ntohs(a6.sin6_port);
    }

    test_daemon();
    test_waitsig();

    len = sizeof(a);
    if (getsockname(p, (void *)&a, &len) || ntohs(a.sin_port) != ident || a.sin_addr.s_addr != lo.sin_addr.s_addr)
        fail("ping socket bound to %s ident %d, expected 127.0.0.1 ident %d", inet_ntoa(a.sin_addr), ntohs(a.sin_port), ident);
    if (geti(p, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_ICMP || geti(p, SOL_SOCKET, SO_TYPE) != SOCK_DGRAM) fail("not a ping socket any more");
    if (geti(p, IPPROTO_IP, IP_TTL) != ttl) fail("IP_TTL is %d, expected %d", geti(p, IPPROTO_IP, IP_TTL), ttl);
    struct timeval got;
    len = sizeof(got);
    if (getsockopt(p, SOL_SOCKET, SO_RCVTIMEO, &got, &len) || got.tv_sec != 2) fail("SO_RCVTIMEO lost");
    echo(p, "bound ping socket", &lo, sizeof(lo), 0, ident, 1);
    char pkt[16] = { ICMP_ECHO };
    if (send(c, pkt, sizeof(pkt), MSG_DONTWAIT) >= 0 || errno != EPIPE) fail("the shut connected ping socket sent (%m), expected EPIPE");
    len = sizeof(a);
    if (getsockname(u, (void *)&a, &len) || a.sin_port != 0) fail("the unbound ping socket has ident %d after restore", ntohs(a.sin_port));
    if (!(fcntl(u, F_GETFL) & O_NONBLOCK)) fail("O_NONBLOCK lost");
    if (p6 >= 0) {
        len = sizeof(a6);
        if (getsockname(p6, (void *)&a6, &len) || ntohs(a6.sin6_port) != ident6) fail("ICMPv6 ping socket ident %d, expected %d", ntohs(a6.sin6_port), ident6);
        echo(p6, "ICMPv6 ping socket", &lo6, sizeof(lo6), 1, ident6, 2);
    }
    return test_report();
}
