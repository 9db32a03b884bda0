// A listening TCP socket (SO_REUSEADDR, backlog 5) on 127.0.0.1 and a TCP socket only bound
// to a port. After restore the listener still has its port and options and accepts a new
// connection from the workload itself, which then carries data both ways; the bound socket
// still holds its port.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int port_of(int s) {
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    if (getsockname(s, (struct sockaddr *)&a, &l)) return -1;
    return ntohs(a.sin_port);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 5)) fail("listen: %m");
    int port = port_of(ls);
    int bs = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(bs, (struct sockaddr *)&a, sizeof(a))) fail("bind: %m");
    int bport = port_of(bs);
    test_daemon();
    test_waitsig();

    if (port_of(ls) != port) fail("listener port %d, was %d", port_of(ls), port);
    if (port_of(bs) != bport) fail("bound socket port %d, was %d", port_of(bs), bport);
    int v = 0;
    socklen_t l = sizeof(v);
    if (getsockopt(ls, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) || !v) fail("the listener is no longer listening");
    l = sizeof(v);
    if (getsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &v, &l) || !v) fail("the listener lost SO_REUSEADDR");
    l = sizeof(v);
    if (getsockopt(bs, SOL_SOCKET, SO_REUSEADDR, &v, &l) || v) fail("the bound socket gained SO_REUSEADDR");

    a.sin_port = htons(port);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof(a))) {
        fail("connect to the restored listener: %m");
        return test_report();
    }
    int s = accept(ls, NULL, NULL);
    if (s < 0) {
        fail("accept: %m");
        return test_report();
    }
    char out[4096], in[4096];
    datagen(out, sizeof(out), 101);
    if (send(c, out, sizeof(out), 0) != sizeof(out)) fail("send: %m");
    if (recv(s, in, sizeof(in), MSG_WAITALL) != sizeof(in)) fail("recv: %m");
    else datachk_fail("client to server", in, sizeof(in), 101);
    datagen(out, sizeof(out), 202);
    if (send(s, out, sizeof(out), 0) != sizeof(out)) fail("send: %m");
    if (recv(c, in, sizeof(in), MSG_WAITALL) != sizeof(in)) fail("recv: %m");
    else datachk_fail("server to client", in, sizeof(in), 202);
    return test_report();
}
