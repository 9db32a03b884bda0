// Raw sockets keep their protocol, bound address, connected peer, raw options and shutdown
// state, and still work: after restore a packet sent on loopback reaches the restored socket,
// and the connected one sends to its peer. IPv4: protocol 253 bound and connected to a
// loopback address of its own (127.x.y.z, so that no other program's packets queue on it)
// with IP_NODEFRAG, IP_TOS and SO_RCVBUF; an ICMP socket whose ICMP_FILTER blocks every type;
// protocol 254 with IP_HDRINCL, shut for sending (EPIPE after). IPv6 (when there is ::1):
// a protocol of its own bound to ::1 with IPV6_CHECKSUM 2, an ICMPv6 socket with a blocking filter.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROTO 253
#define PROTO_HDR 254

static int geti(int s, int level, int opt) {
    int v = -12345;
    socklen_t l = sizeof(v);
    if (getsockopt(s, level, opt, &v, &l)) fail("getsockopt(%d, %d): %m", level, opt);
    return v;
}

// Waits up to a second for a packet on s; returns its length (-1: none).
// Empties what queued before a socket got its filter or binding.
static void drain(int s) {
    char b[2048];
    while (recv(s, b, sizeof(b), MSG_DONTWAIT) >= 0) ;
}

static ssize_t recv_wait(int s, void *buf, size_t len) {
    for (int i = 0; i < 100; i++) {
        ssize_t n = recv(s, buf, len, MSG_DONTWAIT);
        if (n >= 0 || errno != EAGAIN) return n;
        usleep(10000);
    }
    return -1;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    srand(time(NULL) ^ getpid());
    struct sockaddr_in me = { .sin_family = AF_INET };
    me.sin_addr.s_addr = htonl(0x7f000000 | (1 + rand() % 250) << 16 | (1 + rand() % 250) << 8 | (2 + rand() % 250));
    int r = socket(AF_INET, SOCK_RAW, PROTO);
    if (r < 0) fail("socket(SOCK_RAW, %d): %m", PROTO);
    if (bind(r, (void *)&me, sizeof(me)) || connect(r, (void *)&me, sizeof(me))) fail("bind/connect %s: %m", inet_ntoa(me.sin_addr));
    int one = 1, tos = 0x20, rcvbuf = 65536;
    if (setsockopt(r, IPPROTO_IP, IP_NODEFRAG, &one, 4) || setsockopt(r, IPPROTO_IP, IP_TOS, &tos, 4) ||
        setsockopt(r, SOL_SOCKET, SO_RCVBUF, &rcvbuf, 4)) fail("setsockopt: %m");
    rcvbuf = geti(r, SOL_SOCKET, SO_RCVBUF);
    int ic = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    struct icmp_filter flt = { .data = ~0u };
    if (ic < 0 || setsockopt(ic, SOL_RAW, ICMP_FILTER, &flt, sizeof(flt))) fail("ICMP socket with ICMP_FILTER: %m");
    int h = socket(AF_INET, SOCK_RAW, PROTO_HDR);
    if (h < 0 || setsockopt(h, IPPROTO_IP, IP_HDRINCL, &one, 4)) fail("IP_HDRINCL: %m");
    if (shutdown(h, SHUT_WR) && errno != ENOTCONN) fail("shutdown: %m");
    fcntl(ic, F_SETFL, O_NONBLOCK);

    struct sockaddr_in6 lo6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    // IPv6 has one loopback address: the protocol is this instance's own (unassigned 150-249).
    int proto6 = 150 + rand() % 100;
    int r6 = socket(AF_INET6, SOCK_RAW, proto6), ic6 = -1, csum = 2;
    if (r6 >= 0 && bind(r6, (void *)&lo6, sizeof(lo6))) { close(r6); r6 = -1; }  // no IPv6 here
    struct icmp6_filter f6;
    if (r6 >= 0) {
        if (setsockopt(r6, SOL_RAW, IPV6_CHECKSUM, &csum, 4)) fail("IPV6_CHECKSUM: %m");
        ic6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
        ICMP6_FILTER_SETBLOCKALL(&f6);
        if (ic6 < 0 || setsockopt(ic6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, sizeof(f6))) fail("ICMPV6_FILTER: %m");
    }

    drain(r); drain(ic); drain(h);
    if (r6 >= 0) { drain(r6); drain(ic6); }
    test_daemon();
    test_waitsig();

    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    if (getsockname(r, (void *)&a, &len) || a.sin_addr.s_addr != me.sin_addr.s_addr) fail("raw socket not bound to %s any more", inet_ntoa(me.sin_addr));
    if (geti(r, SOL_SOCKET, SO_PROTOCOL) != PROTO || geti(r, SOL_SOCKET, SO_TYPE) != SOCK_RAW) fail("raw socket lost its type or protocol");
    if (geti(r, IPPROTO_IP, IP_NODEFRAG) != 1) fail("IP_NODEFRAG lost");
    if (geti(r, IPPROTO_IP, IP_TOS) != tos) fail("IP_TOS is %d, expected %d", geti(r, IPPROTO_IP, IP_TOS), tos);
    if (geti(r, SOL_SOCKET, SO_RCVBUF) != rcvbuf) fail("SO_RCVBUF is %d, expected %d", geti(r, SOL_SOCKET, SO_RCVBUF), rcvbuf);
    if (geti(r, IPPROTO_IP, IP_HDRINCL) != 0 || geti(h, IPPROTO_IP, IP_HDRINCL) != 1) fail("IP_HDRINCL changed");
    struct icmp_filter got = { 0 };
    len = sizeof(got);
    if (getsockopt(ic, SOL_RAW, ICMP_FILTER, &got, &len) || got.data != ~0u) fail("ICMP_FILTER is %#x, expected %#x", got.data, ~0u);
    if (!(fcntl(ic, F_GETFL) & O_NONBLOCK)) fail("ICMP socket lost O_NONBLOCK");

    // A fresh sender's packet reaches the restored socket.
    // (From the same address: the restored socket is connected to it.)
    int snd = socket(AF_INET, SOCK_RAW, PROTO);
    if (bind(snd, (void *)&me, sizeof(me))) fail("bind the sender: %m");
    char buf[256];
    if (sendto(snd, "after restore", 13, 0, (void *)&me, sizeof(me)) != 13) fail("sendto: %m");
    ssize_t n = recv_wait(r, buf, sizeof(buf));
    if (n != 20 + 13 || memcmp(buf + 20, "after restore", 13)) fail("restored raw socket got %zd bytes (%m), expected the 33-byte packet", n);
    // The connected one still sends to its peer (itself).
    if (send(r, "connected", 9, 0) != 9) fail("send on the connected raw socket: %m");
    n = recv_wait(r, buf, sizeof(buf));
    if (n != 20 + 9 || memcmp(buf + 20, "connected", 9)) fail("connected raw socket: got %zd bytes, expected its own 29-byte packet", n);
    // Shut for sending: a header-included packet is refused.
    struct iphdr ip = { .version = 4, .ihl = 5, .ttl = 64, .protocol = PROTO_HDR, .saddr = me.sin_addr.s_addr, .daddr = me.sin_addr.s_addr, .tot_len = htons(20) };
    if (sendto(h, &ip, sizeof(ip), 0, (void *)&me, sizeof(me)) >= 0 || errno != EPIPE) fail("the shut IP_HDRINCL socket sent (%m), expected EPIPE");

    if (r6 >= 0) {
        struct sockaddr_in6 b6;
        len = sizeof(b6);
        if (getsockname(r6, (void *)&b6, &len) || memcmp(&b6.sin6_addr, &in6addr_loopback, 16)) fail("IPv6 raw socket not bound to ::1");
        if (geti(r6, SOL_RAW, IPV6_CHECKSUM) != csum) fail("IPV6_CHECKSUM is %d, expected %d", geti(r6, SOL_RAW, IPV6_CHECKSUM), csum);
        struct icmp6_filter g6;
        len = sizeof(g6);
        if (getsockopt(ic6, IPPROTO_ICMPV6, ICMP6_FILTER, &g6, &len) || memcmp(&g6, &f6, sizeof(f6))) fail("ICMPV6_FILTER changed");
        int s6 = socket(AF_INET6, SOCK_RAW, proto6);
        setsockopt(s6, SOL_RAW, IPV6_CHECKSUM, &csum, 4);
        if (sendto(s6, "v6 after", 8, 0, (void *)&lo6, sizeof(lo6)) != 8) fail("sendto ::1: %m");
        n = recv_wait(r6, buf, sizeof(buf));
        if (n != 8 || memcmp(buf + 4, "fter", 4)) fail("restored IPv6 raw socket got %zd bytes (%m), expected 8", n);
    }
    return test_report();
}
