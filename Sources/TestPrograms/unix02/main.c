// Named unix sockets: a stream listener bound to a relative path with a connection accepted
// (data queued both ways, names on both ends) and one not yet accepted, and an abstract-named datagram socket with a connected client and a datagram
// waiting for it; a socket whose file was unlinked after bind. Names, the pending connection
// and the datagram come back, and the unlinked file stays unlinked.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct sockaddr_un ls = { .sun_family = AF_UNIX }, ds = { .sun_family = AF_UNIX };
    strcpy(ls.sun_path, "unix02.sock");
    unlink(ls.sun_path);
    // Abstract: a 0 byte, then the name.
    int dlen = snprintf(ds.sun_path + 1, sizeof(ds.sun_path) - 1, "unix02-%d", getpid()) + 1 + offsetof(struct sockaddr_un, sun_path);
    int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
    int d = socket(AF_UNIX, SOCK_DGRAM, 0), dc = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(l, (void *)&ls, sizeof(ls)) || listen(l, 5)) fail("listen: %m");
    int ac = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(ac, (void *)&ls, sizeof(ls))) fail("connect: %m");
    int as = accept(l, NULL, NULL);
    if (as < 0) fail("accept: %m");
    if (send(ac, "to server", 9, 0) != 9 || send(as, "to client!", 10, 0) != 10) fail("send on the accepted connection: %m");
    if (connect(c, (void *)&ls, sizeof(ls))) fail("connect: %m");
    if (bind(d, (void *)&ds, dlen) || connect(dc, (void *)&ds, dlen)) fail("dgram bind/connect: %m");
    if (send(dc, "hello server", 12, 0) != 12) fail("send: %m");
    struct sockaddr_un gs = { .sun_family = AF_UNIX };
    strcpy(gs.sun_path, "unix02.gone");
    unlink(gs.sun_path);
    int g = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(g, (void *)&gs, sizeof(gs))) fail("bind unix02.gone: %m");
    unlink(gs.sun_path);
    fcntl(l, F_SETFL, O_NONBLOCK);
    test_daemon();
    test_waitsig();

    struct sockaddr_un got = { 0 };
    socklen_t len = sizeof(got);
    if (getsockname(l, (void *)&got, &len) || strcmp(got.sun_path, "unix02.sock")) fail("listener is bound to '%s', expected 'unix02.sock'", got.sun_path);
    memset(&got, 0, sizeof(got));
    len = sizeof(got);
    if (getsockname(as, (void *)&got, &len) || strcmp(got.sun_path, "unix02.sock")) fail("accepted socket is named '%s', expected 'unix02.sock'", got.sun_path);
    memset(&got, 0, sizeof(got));
    len = sizeof(got);
    if (getpeername(ac, (void *)&got, &len) || strcmp(got.sun_path, "unix02.sock")) fail("accepted connection's client has peer '%s', expected 'unix02.sock'", got.sun_path);
    char q[16] = { 0 };
    if (recv(as, q, sizeof(q), MSG_DONTWAIT) != 9 || memcmp(q, "to server", 9)) fail("accepted socket holds '%s', expected 'to server'", q);
    memset(q, 0, sizeof(q));
    if (recv(ac, q, sizeof(q), MSG_DONTWAIT) != 10 || memcmp(q, "to client!", 10)) fail("its client holds '%s', expected 'to client!'", q);
    int acc = accept(l, NULL, NULL);
    if (acc < 0) fail("no pending connection on the listener: %m");
    else {
        char buf[16] = { 0 };
        if (send(c, "ping", 4, 0) != 4 || recv(acc, buf, sizeof(buf), MSG_DONTWAIT) != 4 || memcmp(buf, "ping", 4))
            fail("the accepted connection does not carry the client's data");
        if (send(acc, "pong", 4, 0) != 4 || recv(c, buf, sizeof(buf), MSG_DONTWAIT) != 4 || memcmp(buf, "pong", 4))
            fail("the client does not get the server's data");
    }
    if (accept(l, NULL, NULL) >= 0 || errno != EAGAIN) fail("a second pending connection appeared");
    len = sizeof(got);
    if (getsockname(d, (void *)&got, &len) || (int)len != dlen || memcmp(got.sun_path, ds.sun_path, dlen - offsetof(struct sockaddr_un, sun_path)))
        fail("dgram socket lost its abstract name");
    char buf[32] = { 0 };
    ssize_t n = recv(d, buf, sizeof(buf), MSG_DONTWAIT);
    if (n != 12 || memcmp(buf, "hello server", 12)) fail("dgram socket holds %zd bytes '%.*s', expected 'hello server'", n, (int)(n > 0 ? n : 0), buf);
    if (send(dc, "again", 5, 0) != 5 || recv(d, buf, sizeof(buf), MSG_DONTWAIT) != 5) fail("dgram client is no longer connected to the server");
    memset(&got, 0, sizeof(got));
    len = sizeof(got);
    if (getsockname(g, (void *)&got, &len) || strcmp(got.sun_path, "unix02.gone")) fail("unlinked socket is bound to '%s', expected 'unix02.gone'", got.sun_path);
    if (access("unix02.gone", F_OK) == 0) fail("unix02.gone, unlinked before the dump, exists again");
    unlink("unix02.sock");
    return test_report();
}
