// Half-closed TCP connections, IPv4 and IPv6, both ends in the tree: one end shut for writing
// (FIN_WAIT2, its FIN acked), the other with the FIN received (CLOSE_WAIT), data unread both
// ways. After restore the states are the same, the data and the EOF arrive in order, the
// CLOSE_WAIT end can still send, the FIN_WAIT2 end cannot, and closing the other half ends
// the connection on both sides.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void wait_state(int s, int want, const char *what) {
    for (int i = 0; i < 500 && tcp_state(s) != want; i++) usleep(2000);
    if (tcp_state(s) != want) fail("%s: TCP state %d, not %d", what, tcp_state(s), want);
}

static void readn(int s, const char *want, const char *what) {
    char buf[64] = {0};
    size_t n = strlen(want), got = 0;
    while (got < n) {
        struct pollfd p = { .fd = s, .events = POLLIN };
        if (poll(&p, 1, 5000) != 1) { fail("%s: nothing to read (have \"%.*s\")", what, (int)got, buf); return; }
        ssize_t r = read(s, buf + got, n - got);
        if (r <= 0) { fail("%s: read %zd (%m) after \"%.*s\"", what, r, (int)got, buf); return; }
        got += r;
    }
    if (memcmp(buf, want, n)) fail("%s: read \"%s\", not \"%s\"", what, buf, want);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int fams[2] = { AF_INET, AF_INET6 }, fw[2], cw[2];
    for (int i = 0; i < 2; i++) {
        tcp_loopback_pair(fams[i], &fw[i], &cw[i]);
        if (write(fw[i], "hello", 5) != 5 || write(cw[i], "world", 5) != 5) fail("write: %m");
        if (shutdown(fw[i], SHUT_WR)) fail("shutdown: %m");
        wait_state(fw[i], TCP_FIN_WAIT2, "shut end before the dump");
        wait_state(cw[i], TCP_CLOSE_WAIT, "other end before the dump");
    }

    test_daemon();
    test_waitsig();

    for (int i = 0; i < 2; i++) {
        const char *v = i ? "IPv6" : "IPv4";
        if (tcp_state(fw[i]) != TCP_FIN_WAIT2) fail("%s: shut end is in state %d, not FIN_WAIT2", v, tcp_state(fw[i]));
        if (tcp_state(cw[i]) != TCP_CLOSE_WAIT) fail("%s: other end is in state %d, not CLOSE_WAIT", v, tcp_state(cw[i]));
        readn(cw[i], "hello", "CLOSE_WAIT end");
        char c;
        if (read(cw[i], &c, 1) != 0) fail("%s: CLOSE_WAIT end sees no EOF after the data", v);
        readn(fw[i], "world", "FIN_WAIT2 end");
        if (write(cw[i], "more", 4) != 4) fail("%s: CLOSE_WAIT end cannot send: %m", v);
        readn(fw[i], "more", "FIN_WAIT2 end, after restore");
        if (send(fw[i], "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) fail("%s: FIN_WAIT2 end could send (%m)", v);
        if (shutdown(cw[i], SHUT_WR)) fail("%s: shutdown of the other half: %m", v);
        struct pollfd p = { .fd = fw[i], .events = POLLIN };
        if (poll(&p, 1, 5000) != 1 || read(fw[i], &c, 1) != 0) fail("%s: FIN_WAIT2 end sees no EOF once the other half closes", v);
    }
    return test_report();
}
