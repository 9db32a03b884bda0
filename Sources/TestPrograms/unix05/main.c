// A datagram socket of the tree, bound to a path, connected to a named datagram socket of a
// process outside the tree (syslog's /dev/log pattern), dumped with --ext-unix-sk. The outside
// process holds a datagram the tree sent before the dump unread in its queue across the dump;
// after restore it reads that one, then one sent after restore, and answers the tree's named
// socket with what it got. The tree's socket must still reach it and be reached by it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct sockaddr_un addr(const char *dir, const char *name, socklen_t *len) {
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s", dir, name);
    *len = offsetof(struct sockaddr_un, sun_path) + strlen(a.sun_path) + 1;
    return a;
}

// The outside peer: answers "ping" at once, then waits for SIGUSR1 before reading the rest,
// so what the tree sends meanwhile sits in its queue across the dump.
static void outside(int sk, const char *dir) {
    socklen_t tl;
    struct sockaddr_un t = addr(dir, "tree", &tl);
    char buf[64], got[256] = "";
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    alarm(120);  // never outlives a failed case for long
    ssize_t n = recv(sk, buf, sizeof(buf), 0);
    if (n != 4 || memcmp(buf, "ping", 4)) _exit(2);
    if (sendto(sk, "pong", 4, 0, (void *)&t, tl) != 4) _exit(3);
    int sig;
    sigwait(&usr1, &sig);
    while ((n = recv(sk, buf, sizeof(buf) - 1, 0)) > 0) {
        buf[n] = 0;
        if (!strcmp(buf, "bye")) break;
        if (*got) strcat(got, ",");
        strncat(got, buf, sizeof(got) - strlen(got) - 2);
    }
    char answer[300];
    snprintf(answer, sizeof(answer), "got:%s", got);
    sendto(sk, answer, strlen(answer), 0, (void *)&t, tl);
    _exit(0);
}

int main(int argc, char **argv) {
    char dir[] = "/tmp/zdtm-unix05.XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    socklen_t ol, tl;
    struct sockaddr_un o = addr(dir, "outside", &ol), t = addr(dir, "tree", &tl);
    int osk = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (osk < 0 || bind(osk, (void *)&o, ol)) { perror("outside bind"); return 1; }
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    // Forked before test_init: a sibling of the daemon, outside the dumped tree.
    pid_t out = fork();
    if (out < 0) { perror("fork"); return 1; }
    if (out == 0) outside(osk, dir);
    close(osk);
    sigprocmask(SIG_UNBLOCK, &usr1, NULL);
    test_init(argc, argv);
    int sk = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (sk < 0 || bind(sk, (void *)&t, tl) || connect(sk, (void *)&o, ol)) fail("tree socket: %m");
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(sk, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[300];
    if (send(sk, "ping", 4, 0) != 4) fail("ping: %m");
    ssize_t n = recv(sk, buf, sizeof(buf), 0);
    if (n != 4 || memcmp(buf, "pong", 4)) fail("pong: %zd %m", n);
    if (send(sk, "before", 6, 0) != 6) fail("send before: %m");
    test_daemon();
    test_waitsig();
    kill(out, SIGUSR1);
    if (send(sk, "after", 5, 0) != 5) fail("send after restore: %m");
    if (send(sk, "bye", 3, 0) != 3) fail("send bye: %m");
    struct sockaddr_un from;
    socklen_t fl = sizeof(from);
    n = recvfrom(sk, buf, sizeof(buf) - 1, 0, (void *)&from, &fl);
    if (n < 0) fail("no answer from the outside socket: %m");
    else {
        buf[n] = 0;
        if (strcmp(buf, "got:before,after")) fail("the outside socket got '%s', expected 'got:before,after'", buf);
        if (fl != ol || strcmp(from.sun_path, o.sun_path)) fail("answer from '%.*s', expected %s", (int)(fl > 2 ? fl - 2 : 0), from.sun_path, o.sun_path);
    }
    unlink(o.sun_path);
    unlink(t.sun_path);
    rmdir(dir);
    return test_report();
}
