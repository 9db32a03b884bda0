// Socket options, shutdown state, a classic BPF filter and fd status flags come back on UDP,
// TCP (listening, unconnected and established) and unix sockets: every option in the table
// below is read before the dump and must read the same after it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

struct opt { int level, opt; const char *name; };
static const struct opt opts[] = {
    { SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR" }, { SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT" },
    { SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST" }, { SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE" },
    { SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF" }, { SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF" },
    { SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY" }, { SOL_SOCKET, SO_MARK, "SO_MARK" },
    { SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT" }, { SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED" },
    { SOL_SOCKET, SO_DONTROUTE, "SO_DONTROUTE" }, { SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE" },
    { SOL_SOCKET, SO_BUF_LOCK, "SO_BUF_LOCK" },
};
static const struct opt ipopts[] = {
    { IPPROTO_IP, IP_TOS, "IP_TOS" }, { IPPROTO_IP, IP_TTL, "IP_TTL" }, { IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO" },
    { IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND" },
};
static const struct opt tcpopts[] = {
    { IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY" }, { IPPROTO_TCP, TCP_CORK, "TCP_CORK" },
    { IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE" }, { IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL" },
    { IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT" },
};

#define MAXS 8
#define NOPT (sizeof(opts) / sizeof(opts[0]) + 4 + 5 + 3)
static struct { int fd; const char *what; int vals[NOPT]; struct linger lin; int flags; short rdhup; } socks[MAXS];
static int nsocks;

static void set(int fd, int level, int opt, int v, const char *name) {
    if (setsockopt(fd, level, opt, &v, sizeof(v))) fail("set %s: %m", name);
}

static int get(int fd, int level, int opt) {
    int v = -12345;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, level, opt, &v, &l)) v = -errno;
    return v;
}

static short rdhup(int fd) {
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    poll(&p, 1, 0);
    return p.revents & (POLLRDHUP | POLLHUP);
}

static void record(int i, int inet, int tcp) {
    int fd = socks[i].fd, k = 0;
    for (size_t j = 0; j < sizeof(opts) / sizeof(opts[0]); j++) socks[i].vals[k++] = get(fd, opts[j].level, opts[j].opt);
    for (size_t j = 0; j < 4; j++) socks[i].vals[k++] = inet ? get(fd, ipopts[j].level, ipopts[j].opt) : 0;
    for (size_t j = 0; j < 5; j++) socks[i].vals[k++] = tcp ? get(fd, tcpopts[j].level, tcpopts[j].opt) : 0;
    socklen_t l = sizeof(socks[i].lin);
    getsockopt(fd, SOL_SOCKET, SO_LINGER, &socks[i].lin, &l);
    socks[i].flags = fcntl(fd, F_GETFL);
    socks[i].rdhup = rdhup(fd);
}

static int add(int fd, const char *what) {
    socks[nsocks].fd = fd;
    socks[nsocks].what = what;
    return nsocks++;
}

static void common(int fd, int prio) {
    set(fd, SOL_SOCKET, SO_PRIORITY, prio, "SO_PRIORITY");
    set(fd, SOL_SOCKET, SO_MARK, 40 + prio, "SO_MARK");
    set(fd, SOL_SOCKET, SO_RCVLOWAT, 3, "SO_RCVLOWAT");
    set(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
    set(fd, SOL_SOCKET, SO_RCVBUF, 70000 + prio * 1024, "SO_RCVBUF");
    struct linger lin = { 1, 7 };
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin))) fail("SO_LINGER: %m");
}

// Accepts only 5-byte datagrams (13 bytes with the UDP header the filter sees): the length
// check is what is lost without it.
static struct sock_filter code[] = {
    { BPF_LD | BPF_W | BPF_LEN, 0, 0, 0 },
    { BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 13 },
    { BPF_RET | BPF_K, 0, 0, 0xffff },
    { BPF_RET | BPF_K, 0, 0, 0 },
};

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len;

    // UDP: broadcast, TOS/TTL, pktinfo, a filter, bound, shut for reading.
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    common(u, 3);
    set(u, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST");
    set(u, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    set(u, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    set(u, IPPROTO_IP, IP_TOS, 0x10, "IP_TOS");
    set(u, IPPROTO_IP, IP_TTL, 33, "IP_TTL");
    set(u, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO");
    struct sock_fprog prog = { .len = 4, .filter = code };
    if (setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog))) fail("SO_ATTACH_FILTER: %m");
    if (bind(u, (void *)&lo, sizeof(lo))) fail("bind: %m");
    struct sockaddr_in ua;
    len = sizeof(ua);
    getsockname(u, (void *)&ua, &len);
    fcntl(u, F_SETFL, O_NONBLOCK);
    int ui = add(u, "UDP socket with a filter");

    // UDP, unbound and shut down both ways; another bound and shut for writing.
    int u2 = socket(AF_INET, SOCK_DGRAM, 0);
    set(u2, IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND");
    shutdown(u2, SHUT_RDWR);
    int u2i = add(u2, "unbound UDP socket shut down");
    int u3 = socket(AF_INET, SOCK_DGRAM, 0);
    if (bind(u3, (void *)&lo, sizeof(lo))) fail("bind: %m");
    shutdown(u3, SHUT_WR);
    int u3i = add(u3, "UDP socket shut for writing");
    // Unbound and shut for writing only (no table and no poll bit shows it), one bound to lo
    // (cryo's probe clears the binding and must put it back); unbound and open.
    int u4 = socket(AF_INET, SOCK_DGRAM, 0), u5 = socket(AF_INET6, SOCK_DGRAM, 0), u6 = socket(AF_INET, SOCK_DGRAM, 0);
    if (setsockopt(u4, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3)) fail("SO_BINDTODEVICE lo: %m");
    shutdown(u4, SHUT_WR);
    shutdown(u5, SHUT_WR);
    int loidx = get(u4, SOL_SOCKET, SO_BINDTOIFINDEX);
    // IPv6 UDP bound to an address no interface has (IP_FREEBIND; fb turns it off after bind);
    // two TCP listeners share a port through SO_REUSEPORT, rp1 turning it off after listening.
    struct sockaddr_in6 doc = { .sin6_family = AF_INET6 };
    inet_pton(AF_INET6, "2001:db8::42", &doc.sin6_addr);
    int fb = socket(AF_INET6, SOCK_DGRAM, 0), fb2 = socket(AF_INET6, SOCK_DGRAM, 0);
    set(fb, IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND");
    set(fb2, IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND");
    if (bind(fb, (void *)&doc, sizeof(doc)) || bind(fb2, (void *)&doc, sizeof(doc))) fail("bind to 2001:db8::42 with IP_FREEBIND: %m");
    set(fb, IPPROTO_IP, IP_FREEBIND, 0, "IP_FREEBIND");
    int rp1 = socket(AF_INET, SOCK_STREAM, 0), rp2 = socket(AF_INET, SOCK_STREAM, 0);
    set(rp1, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    set(rp2, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    struct sockaddr_in ra;
    if (bind(rp1, (void *)&lo, sizeof(lo)) || listen(rp1, 4)) fail("reuseport listener: %m");
    len = sizeof(ra);
    getsockname(rp1, (void *)&ra, &len);
    if (bind(rp2, (void *)&ra, sizeof(ra)) || listen(rp2, 4)) fail("second reuseport listener: %m");
    set(rp1, SOL_SOCKET, SO_REUSEPORT, 0, "SO_REUSEPORT");

    // TCP: a listener with keepalive knobs, a connection (flags without O_NONBLOCK, shut
    // for reading on the accepted side, SO_REUSEADDR set on it, TCP_NODELAY).
    int l = socket(AF_INET, SOCK_STREAM, 0);
    common(l, 4);
    set(l, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    set(l, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
    set(l, IPPROTO_TCP, TCP_KEEPIDLE, 77, "TCP_KEEPIDLE");
    set(l, IPPROTO_TCP, TCP_KEEPINTVL, 11, "TCP_KEEPINTVL");
    set(l, IPPROTO_TCP, TCP_KEEPCNT, 4, "TCP_KEEPCNT");
    if (bind(l, (void *)&lo, sizeof(lo)) || listen(l, 4)) fail("listen: %m");
    struct sockaddr_in la;
    len = sizeof(la);
    getsockname(l, (void *)&la, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&la, sizeof(la))) fail("connect: %m");
    int a = accept(l, NULL, NULL);
    if (a < 0) fail("accept: %m");
    set(a, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    set(a, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
    set(a, IPPROTO_IP, IP_TOS, 0x08, "IP_TOS");
    set(c, IPPROTO_TCP, TCP_CORK, 1, "TCP_CORK");
    set(c, IPPROTO_TCP, TCP_KEEPIDLE, 99, "TCP_KEEPIDLE");
    shutdown(a, SHUT_RD);
    add(l, "TCP listener");
    int ai = add(a, "accepted TCP connection");
    add(c, "TCP client");
    int t = socket(AF_INET, SOCK_STREAM, 0);
    set(t, IPPROTO_IP, IP_TTL, 17, "IP_TTL");
    set(t, SOL_SOCKET, SO_SNDBUF, 50000, "SO_SNDBUF");
    fcntl(t, F_SETFL, O_NONBLOCK);
    add(t, "unconnected TCP socket");

    // unix datagram pair: options and one end shut for writing.
    int sv[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    set(sv[0], SOL_SOCKET, SO_PASSCRED, 1, "SO_PASSCRED");
    set(sv[0], SOL_SOCKET, SO_SNDBUF, 40000, "SO_SNDBUF");
    shutdown(sv[1], SHUT_WR);
    add(sv[0], "unix socket");
    add(sv[1], "unix socket shut for writing");

    for (int i = 0; i < nsocks; i++) record(i, i < 7, i >= 3 && i < 7);
    if (!(socks[u2i].rdhup & POLLHUP) || !socks[ai].rdhup) fail("set-up: shutdown did not show in poll");
    test_daemon();
    test_waitsig();

    for (int i = 0; i < nsocks; i++) {
        int before[NOPT];
        struct linger lin = socks[i].lin;
        int flags = socks[i].flags;
        short hup = socks[i].rdhup;
        memcpy(before, socks[i].vals, sizeof(before));
        record(i, i < 7, i >= 3 && i < 7);
        size_t k = 0;
        for (size_t j = 0; j < sizeof(opts) / sizeof(opts[0]); j++, k++)
            if (before[k] != socks[i].vals[k]) fail("%s: %s is %d, was %d", socks[i].what, opts[j].name, socks[i].vals[k], before[k]);
        for (size_t j = 0; j < 4; j++, k++)
            if (before[k] != socks[i].vals[k]) fail("%s: %s is %d, was %d", socks[i].what, ipopts[j].name, socks[i].vals[k], before[k]);
        for (size_t j = 0; j < 5; j++, k++)
            if (before[k] != socks[i].vals[k]) fail("%s: %s is %d, was %d", socks[i].what, tcpopts[j].name, socks[i].vals[k], before[k]);
        if (lin.l_onoff != socks[i].lin.l_onoff || lin.l_linger != socks[i].lin.l_linger)
            fail("%s: SO_LINGER is {%d, %d}, was {%d, %d}", socks[i].what, socks[i].lin.l_onoff, socks[i].lin.l_linger, lin.l_onoff, lin.l_linger);
        if (flags != socks[i].flags) fail("%s: fd flags 0%o, were 0%o", socks[i].what, socks[i].flags, flags);
        if (hup != socks[i].rdhup) fail("%s: poll shows shutdown 0x%x, was 0x%x", socks[i].what, socks[i].rdhup, hup);
    }
    // The filter: read back the same, and it still drops what it dropped.
    struct sock_filter got[8];
    socklen_t n = 8;
    if (getsockopt(u, SOL_SOCKET, SO_GET_FILTER, got, &n) || n != 4 || memcmp(got, code, sizeof(code)))
        fail("UDP socket filter: %u blocks read back (%m), not the 4 attached", n);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    sendto(s, "12345", 5, 0, (void *)&ua, sizeof(ua));
    sendto(s, "123456", 6, 0, (void *)&ua, sizeof(ua));
    sendto(s, "abcde", 5, 0, (void *)&ua, sizeof(ua));
    usleep(20000);
    char buf[16];
    ssize_t r1 = recv(u, buf, sizeof(buf), 0), r2 = recv(u, buf, sizeof(buf), 0), r3 = recv(u, buf, sizeof(buf), 0);
    if (r1 != 5 || r2 != 5 || r3 != -1) fail("filtered UDP socket received %zd, %zd, %zd bytes: expected 5, 5, none", r1, r2, r3);
    // Shut for writing: sends fail.
    if (sendto(u3, "x", 1, MSG_NOSIGNAL, (void *)&ua, sizeof(ua)) != -1 || errno != EPIPE) fail("UDP socket shut for writing could send (%m)");
    if (get(fb, IPPROTO_IP, IP_FREEBIND) != 0 || get(fb2, IPPROTO_IP, IP_FREEBIND) != 1)
        fail("IP_FREEBIND is %d and %d, was 0 and 1", get(fb, IPPROTO_IP, IP_FREEBIND), get(fb2, IPPROTO_IP, IP_FREEBIND));
    struct sockaddr_in6 got6;
    len = sizeof(got6);
    if (getsockname(fb, (void *)&got6, &len) || memcmp(&got6.sin6_addr, &doc.sin6_addr, 16)) fail("free-bound UDP socket lost its address");
    if (get(rp1, SOL_SOCKET, SO_REUSEPORT) != 0 || get(rp2, SOL_SOCKET, SO_REUSEPORT) != 1)
        fail("SO_REUSEPORT is %d and %d, was 0 and 1", get(rp1, SOL_SOCKET, SO_REUSEPORT), get(rp2, SOL_SOCKET, SO_REUSEPORT));
    struct sockaddr_in rb;
    len = sizeof(rb);
    if (getsockname(rp2, (void *)&rb, &len) || rb.sin_port != ra.sin_port) fail("reuseport listeners no longer share port %d", ntohs(ra.sin_port));
    int rc = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(rc, (void *)&ra, sizeof(ra))) fail("connect to the reuseport listeners: %m");
    int unb[3] = { u4, u5, u6 };
    for (int i = 0; i < 3; i++) {
        struct sockaddr_in6 sa;
        len = sizeof(sa);
        if (getsockname(unb[i], (void *)&sa, &len) || sa.sin6_port != 0) fail("unbound UDP socket %d came back bound (port %d)", i, ntohs(sa.sin6_port));
    }
    if (get(u4, SOL_SOCKET, SO_BINDTOIFINDEX) != loidx) fail("unbound UDP socket lost SO_BINDTODEVICE lo (%d, was %d)", get(u4, SOL_SOCKET, SO_BINDTOIFINDEX), loidx);
    if (sendto(u4, "x", 1, MSG_NOSIGNAL, (void *)&ua, sizeof(ua)) != -1 || errno != EPIPE) fail("unbound UDP socket shut for writing could send");
    struct sockaddr_in6 lo6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT, .sin6_port = htons(9) };
    if (sendto(u5, "x", 1, MSG_NOSIGNAL, (void *)&lo6, sizeof(lo6)) != -1 || errno != EPIPE) fail("unbound UDP6 socket shut for writing could send");
    if (sendto(u6, "12345", 5, MSG_NOSIGNAL, (void *)&ua, sizeof(ua)) != 5) fail("unbound UDP socket cannot send: %m");
    (void)u2i; (void)ui; (void)u3i;
    return test_report();
}
