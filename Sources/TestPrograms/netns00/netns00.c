// Lives in a network namespace of its own (refuses pid 1's). Records the namespace as it
// sees it: each link (name, index, flags, mtu, hardware address), each address, the IPv4
// and IPv6 routing tables and a few sysctls. After SIGTERM all of it must be the same.
// With --peer=IP:PORT it also holds a TCP connection to an echo server outside, streaming a
// pattern through it all along; after SIGTERM it shuts its side and every byte sent must
// have come back, in order.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEED 0x4e7e5500
#define SNAP (1 << 16)

static uint8_t pat(uint64_t off) { return (uint8_t)(pattern_word(SEED, off / 8) >> (8 * (off % 8))); }

static void add(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(char *buf, const char *fmt, ...) {
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, SNAP - n, fmt, ap);
    va_end(ap);
}

// A /proc table without the columns that count use (RefCnt and Use in route, refcnt and use
// in ipv6_route): the rest must not change.
static void table(char *buf, const char *path, int skip1, int skip2) {
    FILE *f = fopen(path, "r");
    if (!f) { add(buf, "%s: %s\n", path, strerror(errno)); return; }
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        int col = 0;
        for (char *t = strtok(line, " \t\n"); t; t = strtok(NULL, " \t\n"), col++)
            if (col != skip1 && col != skip2) add(buf, "%s ", t);
        add(buf, "\n");
    }
    fclose(f);
}

static void sysctl(char *buf, const char *name) {
    char path[256], v[256] = "";
    snprintf(path, sizeof(path), "/proc/sys/net/%s", name);
    FILE *f = fopen(path, "r");
    if (f) { if (!fgets(v, sizeof(v), f)) v[0] = 0; fclose(f); }
    add(buf, "%s = %s", name, v);
}

static void snapshot(char *buf) {
    buf[0] = 0;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct if_nameindex *ifs = if_nameindex();
    for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
        struct ifreq r;
        memset(&r, 0, sizeof(r));
        strncpy(r.ifr_name, i->if_name, IFNAMSIZ - 1);
        int flags = ioctl(s, SIOCGIFFLAGS, &r) == 0 ? r.ifr_flags & (IFF_UP | IFF_NOARP | IFF_PROMISC | IFF_ALLMULTI | IFF_MULTICAST) : -1;
        int mtu = ioctl(s, SIOCGIFMTU, &r) == 0 ? r.ifr_mtu : -1;
        unsigned char hw[6] = {0};
        if (ioctl(s, SIOCGIFHWADDR, &r) == 0) memcpy(hw, r.ifr_hwaddr.sa_data, 6);
        add(buf, "link %u %s flags %#x mtu %d hw %02x:%02x:%02x:%02x:%02x:%02x\n", i->if_index, i->if_name, flags, mtu,
            hw[0], hw[1], hw[2], hw[3], hw[4], hw[5]);
    }
    if (ifs) if_freenameindex(ifs);
    close(s);
    struct ifaddrs *ia;
    if (getifaddrs(&ia) == 0) {
        for (struct ifaddrs *a = ia; a; a = a->ifa_next) {
            if (!a->ifa_addr || (a->ifa_addr->sa_family != AF_INET && a->ifa_addr->sa_family != AF_INET6)) continue;
            char h[64], m[64];
            const void *ap = a->ifa_addr->sa_family == AF_INET ? (void *)&((struct sockaddr_in *)a->ifa_addr)->sin_addr : (void *)&((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr;
            const void *mp = a->ifa_netmask ? (a->ifa_addr->sa_family == AF_INET ? (void *)&((struct sockaddr_in *)a->ifa_netmask)->sin_addr : (void *)&((struct sockaddr_in6 *)a->ifa_netmask)->sin6_addr) : NULL;
            inet_ntop(a->ifa_addr->sa_family, ap, h, sizeof(h));
            if (mp) inet_ntop(a->ifa_addr->sa_family, mp, m, sizeof(m)); else strcpy(m, "-");
            add(buf, "addr %s %s/%s\n", a->ifa_name, h, m);
        }
        freeifaddrs(ia);
    }
    table(buf, "/proc/net/route", 4, 5);
    table(buf, "/proc/net/ipv6_route", 6, 7);
    sysctl(buf, "ipv4/ip_forward");
    sysctl(buf, "ipv4/ip_local_port_range");
    sysctl(buf, "ipv4/conf/all/rp_filter");
    sysctl(buf, "ipv6/conf/all/forwarding");
    sysctl(buf, "core/somaxconn");
}

static int conn = -1;
static uint64_t sent, received;

static void pump(int tail) {
    uint8_t b[8192];
    if (tail >= 0) {
        size_t n = sizeof(b);
        for (size_t i = 0; i < n; i++) b[i] = pat(sent + i);
        ssize_t w = send(conn, b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) sent += w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR) fail("send at %llu: %m", (unsigned long long)sent);
    }
    for (;;) {
        ssize_t r = recv(conn, b, sizeof(b), MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (r < 0) { fail("recv at %llu: %m", (unsigned long long)received); return; }
        if (r == 0) { if (tail < 0) return; fail("EOF from the echo server at %llu", (unsigned long long)received); return; }
        for (ssize_t i = 0; i < r; i++)
            if (b[i] != pat(received + i)) { fail("echoed byte %llu differs", (unsigned long long)(received + i)); return; }
        received += r;
    }
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    // It changes nothing in the network, but what it checks is a namespace's own: pid 1's
    // is refused where it can be seen (in a container pid 1 may be out of reach).
    struct stat mine, host;
    if (stat("/proc/self/ns/net", &mine)) fail("stat /proc/self/ns/net: %m");
    if (stat("/proc/1/ns/net", &host) == 0 && mine.st_ino == host.st_ino) fail("netns00 must run in a network namespace of its own, not pid 1's");
    const char *peer = NULL;
    for (int i = 1; i < zt_argc; i++)
        if (!strncmp(zt_argv[i], "--peer=", 7)) peer = zt_argv[i] + 7;
    if (peer) {
        char host_s[64];
        snprintf(host_s, sizeof(host_s), "%s", peer);
        char *colon = strrchr(host_s, ':');
        if (!colon) fail("--peer=IP:PORT");
        *colon = 0;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(colon + 1))};
        if (inet_pton(AF_INET, host_s, &a.sin_addr) != 1) fail("--peer: bad address %s", host_s);
        conn = socket(AF_INET, SOCK_STREAM, 0);
        if (conn < 0 || connect(conn, (struct sockaddr *)&a, sizeof(a))) fail("connect to %s: %m", peer);
    }
    static char before[SNAP], after[SNAP];
    snapshot(before);
    test_daemon();
    while (!test_stopped()) {
        if (conn >= 0) pump(0);
        usleep(10000);
    }
    snapshot(after);
    if (strcmp(before, after)) {
        // The first line that differs.
        const char *b = before, *a = after;
        while (*b && *b == *a) b++, a++;
        while (b > before && b[-1] != '\n') b--, a--;
        fail("namespace changed: was \"%.*s\", now \"%.*s\"", (int)strcspn(b, "\n"), b, (int)strcspn(a, "\n"), a);
    }
    if (conn >= 0 && !test_failed()) {
        for (int i = 0; i < 64; i++) pump(0);
        if (shutdown(conn, SHUT_WR)) fail("shutdown: %m");
        for (int waited = 0; received < sent && waited < 3000 && !test_failed(); waited++) {
            struct pollfd p = {.fd = conn, .events = POLLIN};
            poll(&p, 1, 10);
            pump(-1);
        }
        if (received != sent) fail("sent %llu bytes, %llu came back", (unsigned long long)sent, (unsigned long long)received);
        else test_msg("streamed %llu bytes through the echo server", (unsigned long long)sent);
    }
    return test_report();
}
