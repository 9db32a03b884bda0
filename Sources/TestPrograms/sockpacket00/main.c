// Packet sockets keep their protocol, bound interface and options, and still work: after
// restore a frame sent on lo reaches each restored socket. A SOCK_RAW one bound to lo for an
// ethertype of its own (in 0x7000-0x77ff), with PACKET_AUXDATA, PACKET_ORIGDEV, PACKET_VERSION TPACKET_V2,
// PACKET_RESERVE, PACKET_TIMESTAMP and a fanout group; a SOCK_DGRAM one bound to lo for
// the next, non-blocking; an unbound one of protocol 0 with PACKET_LOSS and PACKET_VNET_HDR.
// Memberships change the link, so they are added only in a network namespace other than the
// host's (the ns flavour): a multicast address on lo, added twice, must still need two drops.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/net_tstamp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INIT_NET_INO 0xEFFFFFF9u
// Ethertypes of this instance, so that another one's frames on lo do not queue on ours.
static int ETH_RAW, ETH_DGRAM;

static int geti(int s, int opt) {
    int v = -12345;
    socklen_t l = sizeof(v);
    if (getsockopt(s, SOL_PACKET, opt, &v, &l)) fail("getsockopt(SOL_PACKET, %d): %m", opt);
    return v;
}

static void seti(int s, int opt, int v, const char *name) {
    if (setsockopt(s, SOL_PACKET, opt, &v, sizeof(v))) fail("setsockopt(%s, %d): %m", name, v);
}

static int bound(int type, int proto, int ifindex) {
    int s = socket(AF_PACKET, type, htons(proto));
    struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = ifindex };
    if (s < 0 || bind(s, (void *)&ll, sizeof(ll))) fail("packet socket for 0x%x on ifindex %d: %m", proto, ifindex);
    return s;
}

static ssize_t recv_wait(int s, void *buf, size_t len) {
    for (int i = 0; i < 100; i++) {
        ssize_t n = recv(s, buf, len, MSG_DONTWAIT);
        if (n >= 0 || errno != EAGAIN) return n;
        usleep(10000);
    }
    return -1;
}

// Whether lo's multicast list (/proc/net/dev_mcast) holds the membership's address.
static int on_lo(void) {
    char line[256];
    int found = 0;
    FILE *f = fopen("/proc/self/net/dev_mcast", "r");
    if (!f) { fail("/proc/self/net/dev_mcast: %m"); return 0; }
    while (fgets(line, sizeof(line), f)) found |= strstr(line, " lo ") && strstr(line, "01005e7f0102");
    fclose(f);
    return found;
}

static struct packet_mreq mreq(int lo) {
    struct packet_mreq m = { .mr_ifindex = lo, .mr_type = PACKET_MR_MULTICAST, .mr_alen = 6, .mr_address = { 0x01, 0x00, 0x5e, 0x7f, 0x01, 0x02 } };
    return m;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    srand(getpid() ^ time(NULL));
    ETH_RAW = 0x7000 + 2 * (rand() % 0x400);
    ETH_DGRAM = ETH_RAW + 1;
    int lo = if_nametoindex("lo");
    struct stat st;
    int own_net = stat("/proc/self/ns/net", &st) == 0 && st.st_ino != INIT_NET_INO;
    int r = bound(SOCK_RAW, ETH_RAW, lo), d = bound(SOCK_DGRAM, ETH_DGRAM, lo);
    seti(r, PACKET_AUXDATA, 1, "PACKET_AUXDATA");
    seti(r, PACKET_ORIGDEV, 1, "PACKET_ORIGDEV");
    seti(r, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION");
    seti(r, PACKET_RESERVE, 64, "PACKET_RESERVE");
    seti(r, PACKET_TIMESTAMP, SOF_TIMESTAMPING_RAW_HARDWARE, "PACKET_TIMESTAMP");
    int group = (getpid() & 0xffff) | PACKET_FANOUT_HASH << 16;
    seti(r, PACKET_FANOUT, group, "PACKET_FANOUT");
    fcntl(d, F_SETFL, O_NONBLOCK);
    int u = socket(AF_PACKET, SOCK_RAW, 0);
    if (u < 0) fail("socket: %m");
    seti(u, PACKET_LOSS, 1, "PACKET_LOSS");
    seti(u, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR");
    struct packet_mreq m = mreq(lo);
    if (own_net) {
        for (int i = 0; i < 2; i++)
            if (setsockopt(d, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m, sizeof(m))) fail("PACKET_ADD_MEMBERSHIP: %m");
    }

    test_daemon();
    test_waitsig();

    struct sockaddr_ll a;
    socklen_t len = sizeof(a);
    if (getsockname(r, (void *)&a, &len) || a.sll_ifindex != lo || a.sll_protocol != htons(ETH_RAW)) fail("raw packet socket: ifindex %d protocol 0x%x, expected lo (%d) 0x%x", a.sll_ifindex, ntohs(a.sll_protocol), lo, ETH_RAW);
    len = sizeof(a);
    if (getsockname(d, (void *)&a, &len) || a.sll_ifindex != lo || a.sll_protocol != htons(ETH_DGRAM)) fail("dgram packet socket: ifindex %d protocol 0x%x", a.sll_ifindex, ntohs(a.sll_protocol));
    int type = -1;
    len = sizeof(type);
    getsockopt(d, SOL_SOCKET, SO_TYPE, &type, &len);
    if (type != SOCK_DGRAM) fail("dgram packet socket is of type %d", type);
    len = sizeof(a);
    if (getsockname(u, (void *)&a, &len) || a.sll_ifindex != 0 || a.sll_protocol != 0) fail("unbound packet socket: ifindex %d protocol 0x%x", a.sll_ifindex, ntohs(a.sll_protocol));
    if (geti(r, PACKET_AUXDATA) != 1 || geti(r, PACKET_ORIGDEV) != 1) fail("PACKET_AUXDATA or PACKET_ORIGDEV lost");
    if (geti(r, PACKET_VERSION) != TPACKET_V2) fail("PACKET_VERSION is %d", geti(r, PACKET_VERSION));
    if (geti(r, PACKET_RESERVE) != 64) fail("PACKET_RESERVE is %d", geti(r, PACKET_RESERVE));
    if (geti(r, PACKET_TIMESTAMP) != SOF_TIMESTAMPING_RAW_HARDWARE) fail("PACKET_TIMESTAMP is %d", geti(r, PACKET_TIMESTAMP));
    if (geti(r, PACKET_FANOUT) != group) fail("PACKET_FANOUT is %#x, expected %#x", geti(r, PACKET_FANOUT), group);
    if (geti(u, PACKET_LOSS) != 1 || geti(u, PACKET_VNET_HDR) != 1) fail("PACKET_LOSS or PACKET_VNET_HDR lost");
    if (geti(d, PACKET_AUXDATA) != 0) fail("PACKET_AUXDATA appeared on the dgram socket");
    if (!(fcntl(d, F_GETFL) & O_NONBLOCK)) fail("O_NONBLOCK lost");

    // A frame on lo reaches each restored socket.
    int snd = socket(AF_PACKET, SOCK_DGRAM, 0);
    unsigned char zero[ETH_ALEN] = { 0 }, buf[256];
    for (int k = 0; k < 2; k++) {
        int proto = k ? ETH_DGRAM : ETH_RAW, rs = k ? d : r;
        struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = lo, .sll_halen = ETH_ALEN };
        memcpy(to.sll_addr, zero, ETH_ALEN);
        if (sendto(snd, "frame after restore", 19, 0, (void *)&to, sizeof(to)) != 19) fail("sendto lo 0x%x: %m", proto);
        ssize_t n = recv_wait(rs, buf, sizeof(buf));
        size_t hdr = k ? 0 : ETH_HLEN;
        if (n < (ssize_t)(hdr + 19) || memcmp(buf + hdr, "frame after restore", 19)) fail("restored packet socket for 0x%x got %zd bytes (%m)", proto, n);
    }
    if (own_net) {
        // Added twice before: the address stays on lo after one drop, and goes with the second.
        if (!on_lo()) fail("the membership is not on lo after restore");
        if (setsockopt(d, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &m, sizeof(m))) fail("PACKET_DROP_MEMBERSHIP: %m");
        if (!on_lo()) fail("the membership was added once, not twice");
        if (setsockopt(d, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &m, sizeof(m))) fail("PACKET_DROP_MEMBERSHIP: %m");
        if (on_lo()) fail("the membership was added more than twice");
    }
    return test_report();
}
