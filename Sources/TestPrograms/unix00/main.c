// Stream socketpairs keep the bytes queued in each direction, and a pair whose other end
// was closed keeps its queue, then reads EOF.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define AB (100 << 10)

static size_t drain(int fd, char *buf, size_t max) {
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + got, max - got, MSG_DONTWAIT);
        if (n <= 0) break;
        got += n;
    }
    return got;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int s[2], t[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || socketpair(AF_UNIX, SOCK_STREAM, 0, t)) fail("socketpair: %m");
    int big = 1 << 20;
    setsockopt(s[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    char *data = malloc(AB), *back = malloc(AB + 1);
    datagen(data, AB, 77);
    size_t off = 0;
    while (off < AB) {
        ssize_t n = send(s[0], data + off, AB - off > 4000 ? 4000 : AB - off, MSG_DONTWAIT);
        if (n <= 0) fail("send at %zu: %m", off);
        off += n;
    }
    if (send(s[1], "pong", 4, 0) != 4) fail("send pong: %m");
    if (send(t[0], "last words", 10, 0) != 10) fail("send t: %m");
    close(t[0]);
    fcntl(s[1], F_SETFL, O_NONBLOCK);
    test_daemon();
    test_waitsig();
    if (!(fcntl(s[1], F_GETFL) & O_NONBLOCK)) fail("s[1] lost O_NONBLOCK");
    int type = 0;
    socklen_t len = sizeof(type);
    getsockopt(s[0], SOL_SOCKET, SO_TYPE, &type, &len);
    if (type != SOCK_STREAM) fail("s[0] is of type %d, expected SOCK_STREAM", type);
    size_t got = drain(s[1], back, AB + 1);
    if (got != AB) fail("s[1] holds %zu bytes, expected %d", got, AB);
    else datachk_fail("s[0] -> s[1] stream", back, AB, 77);
    char buf[64] = { 0 };
    got = drain(s[0], buf, sizeof(buf));
    if (got != 4 || memcmp(buf, "pong", 4)) fail("s[0] holds %zu bytes '%.*s', expected 'pong'", got, (int)got, buf);
    if (send(s[0], "again", 5, 0) != 5 || drain(s[1], buf, sizeof(buf)) != 5 || memcmp(buf, "again", 5)) fail("pair s does not carry new data");
    memset(buf, 0, sizeof(buf));
    ssize_t n = recv(t[1], buf, sizeof(buf), MSG_DONTWAIT);
    if (n != 10 || memcmp(buf, "last words", 10)) fail("t[1] holds %zd bytes '%.*s', expected 'last words'", n, (int)(n > 0 ? n : 0), buf);
    n = recv(t[1], buf, sizeof(buf), MSG_DONTWAIT);
    if (n != 0) fail("t[1]: %zd (%m) after its data, expected EOF (its peer is closed)", n);
    return test_report();
}
