// An epoll keeps its registered fds with their events and data: ready ones report at once,
// and the registrations belong to the same fd numbers (DEL and MOD find them).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    int p[2], s[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, s)) fail("pipe/socketpair: %m");
    int e = eventfd(5, EFD_NONBLOCK), ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1122334455667788ULL };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)) fail("add pipe: %m");
    ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 7 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev)) fail("add eventfd: %m");
    ev = (struct epoll_event){ .events = EPOLLIN | EPOLLRDHUP, .data.u64 = 9 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s[0], &ev)) fail("add socket: %m");
    if (write(p[1], "!", 1) != 1) fail("write: %m");
    test_daemon();
    test_waitsig();
    struct epoll_event out[8];
    int n = epoll_wait(ep, out, 8, 0);
    int seen_pipe = 0, seen_efd = 0;
    for (int i = 0; i < n; i++) {
        if (out[i].data.u64 == 0x1122334455667788ULL && (out[i].events & EPOLLIN)) seen_pipe++;
        else if (out[i].data.u64 == 7 && (out[i].events & EPOLLIN)) seen_efd++;
        else fail("unexpected event %#x with data %#llx", out[i].events, (unsigned long long)out[i].data.u64);
    }
    if (n != 2 || !seen_pipe || !seen_efd) fail("epoll_wait reported %d events (pipe %d, eventfd %d), expected the pipe and the eventfd", n, seen_pipe, seen_efd);
    if (epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL)) fail("DEL of the pipe fd: %m (not registered under that number)");
    ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 10 };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, s[0], &ev)) fail("MOD of the socket fd: %m");
    if (epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) != -1 || errno != EEXIST) fail("eventfd is not registered any more");
    if (send(s[1], "x", 1, 0) != 1) fail("send: %m");
    n = epoll_wait(ep, out, 8, 0);
    // The eventfd is edge-triggered and already reported: only the socket now.
    if (n != 1 || out[0].data.u64 != 10) fail("after MOD: %d events, first data %#llx, expected the socket with 10", n, n > 0 ? (unsigned long long)out[0].data.u64 : 0ULL);
    return test_report();
}
