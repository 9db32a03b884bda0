// An epoll keeps its registered fds with their events and data: ready ones report at once,
// and the registrations belong to the same fd numbers (DEL and MOD find them). A second epoll
// holds registrations made through fd numbers closed since (900) or reused by another file
// (901, now the eventfd): they come back under those numbers, and 901 stays the eventfd.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
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
    int ep2 = epoll_create1(0);
    ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 900 };
    if (dup2(p[0], 900) != 900 || epoll_ctl(ep2, EPOLL_CTL_ADD, 900, &ev) || close(900)) fail("register 900: %m");
    ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 901 };
    if (dup2(s[0], 901) != 901 || epoll_ctl(ep2, EPOLL_CTL_ADD, 901, &ev) || close(901)) fail("register 901: %m");
    if (dup2(e, 901) != 901) fail("dup2 eventfd: %m");
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
    // The second epoll: the pipe (via 900) and the socket (via 901, sent to above) are ready.
    n = epoll_wait(ep2, out, 8, 0);
    unsigned long long sum = 0;
    for (int i = 0; i < n; i++) sum += out[i].data.u64;
    if (n != 2 || sum != 1801) fail("second epoll: %d events (data sum %llu), expected the pipe's 900 and the socket's 901", n, sum);
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep2);
    FILE *f = fopen(path, "r");
    int t900 = 0, t901 = 0;
    while (f && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "tfd:", 4)) { int t = atoi(line + 4); t900 += t == 900; t901 += t == 901; }
    }
    if (f) fclose(f);
    if (t900 != 1 || t901 != 1) fail("second epoll registers tfd 900 %d time(s), 901 %d time(s), expected once each", t900, t901);
    struct stat a, b;
    if (fstat(901, &a) || fstat(e, &b) || a.st_ino != b.st_ino) fail("fd 901 is no longer the eventfd");
    if (epoll_ctl(ep2, EPOLL_CTL_DEL, 901, NULL) != -1 || errno != ENOENT) fail("DEL of 901 (the eventfd now) found a registration");
    return test_report();
}
