// Netlink sockets keep their protocol, type, port id, groups (one past the 32 of nl_groups too) and
// connected peer, and still work: after restore the bound route socket asks the kernel for
// the loopback link and gets it. Groups are quiet ones (phonet, MCTP addresses), so that no
// event queues on them meanwhile.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GROUP_LOW 21   // RTNLGRP_PHONET_IFADDR
#define GROUP_HIGH 34  // RTNLGRP_MCTP_IFADDR

static int member(int s, int g) {
    unsigned int bits[4] = { 0 };
    socklen_t l = sizeof(bits);
    if (getsockopt(s, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, bits, &l)) { fail("NETLINK_LIST_MEMBERSHIPS: %m"); return 0; }
    return (bits[(g - 1) / 32] >> ((g - 1) % 32)) & 1;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int r = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), u = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    int c = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_USERSOCK), peer = socket(AF_NETLINK, SOCK_RAW, NETLINK_USERSOCK);
    if (r < 0 || u < 0 || c < 0 || peer < 0) { fail("socket(AF_NETLINK): %m"); return test_report(); }
    struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_groups = 1 << (GROUP_LOW - 1) }, got, pa = { .nl_family = AF_NETLINK };
    if (bind(r, (void *)&a, sizeof(a))) fail("bind: %m");
    int g = GROUP_HIGH;
    if (setsockopt(r, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof(g))) fail("NETLINK_ADD_MEMBERSHIP %d: %m", g);
    socklen_t len = sizeof(a);
    getsockname(r, (void *)&a, &len);
    if (bind(peer, (void *)&pa, sizeof(pa))) fail("bind peer: %m");
    len = sizeof(pa);
    getsockname(peer, (void *)&pa, &len);
    if (connect(c, (void *)&pa, sizeof(pa))) fail("connect: %m");
    fcntl(u, F_SETFL, O_NONBLOCK);

    test_daemon();
    test_waitsig();

    len = sizeof(got);
    if (getsockname(r, (void *)&got, &len) || got.nl_pid != a.nl_pid) fail("port id %u, expected %u", got.nl_pid, a.nl_pid);
    if (!member(r, GROUP_LOW) || !member(r, GROUP_HIGH)) fail("groups %d and %d: %d %d", GROUP_LOW, GROUP_HIGH, member(r, GROUP_LOW), member(r, GROUP_HIGH));
    int p = -1;
    len = sizeof(p);
    getsockopt(c, SOL_SOCKET, SO_PROTOCOL, &p, &len);
    if (p != NETLINK_USERSOCK) fail("protocol %d, expected NETLINK_USERSOCK", p);
    len = sizeof(p);
    getsockopt(c, SOL_SOCKET, SO_TYPE, &p, &len);
    if (p != SOCK_DGRAM) fail("type %d, expected SOCK_DGRAM", p);
    len = sizeof(got);
    if (getpeername(c, (void *)&got, &len) || got.nl_pid != pa.nl_pid) fail("connected to port id %u, expected %u", got.nl_pid, pa.nl_pid);
    if (!(fcntl(u, F_GETFL) & O_NONBLOCK)) fail("O_NONBLOCK lost");
    // Still speaks to the kernel: RTM_GETLINK for lo.
    struct { struct nlmsghdr h; struct ifinfomsg i; } req = {
        .h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 7 },
        .i = { .ifi_family = AF_UNSPEC, .ifi_index = if_nametoindex("lo") },
    };
    struct sockaddr_nl k = { .nl_family = AF_NETLINK };
    if (sendto(r, &req, sizeof(req), 0, (void *)&k, sizeof(k)) != sizeof(req)) fail("sendto the kernel: %m");
    char buf[8192];
    ssize_t n = recv(r, buf, sizeof(buf), 0);
    struct nlmsghdr *h = (void *)buf;
    if (n < (ssize_t)sizeof(*h) || h->nlmsg_type != RTM_NEWLINK || h->nlmsg_seq != 7 || h->nlmsg_pid != a.nl_pid)
        fail("RTM_GETLINK: %zd bytes, type %d (%m)", n, n > 0 ? h->nlmsg_type : -1);
    // The connected one still reaches its peer.
    struct nlmsghdr m = { .nlmsg_len = sizeof(m), .nlmsg_type = 0x20 };
    if (send(c, &m, sizeof(m), 0) != sizeof(m)) fail("send to the peer: %m");
    n = recv(peer, buf, sizeof(buf), MSG_DONTWAIT);
    if (n != sizeof(m)) fail("peer got %zd bytes (%m)", n);
    return test_report();
}
