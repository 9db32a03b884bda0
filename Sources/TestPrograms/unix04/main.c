// Socketpairs whose ends are in different processes of the tree (a parent and its child),
// stream, datagram and seqpacket, each with data queued both ways across the dump. After
// restore the queues read the same, message boundaries kept, and the pairs still connect
// the same two processes.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const int types[3] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
static const char *names[3] = { "stream", "dgram", "seqpacket" };

static int expect(int fd, const char *want, const char *what) {
    char buf[64] = { 0 };
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n != (ssize_t)strlen(want) || memcmp(buf, want, n)) { fail("%s: read '%.*s' (%zd), expected '%s'", what, (int)(n > 0 ? n : 0), buf, n, want); return 1; }
    return 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int sp[3][2], ctl[2];
    for (int i = 0; i < 3; i++) if (socketpair(AF_UNIX, types[i], 0, sp[i])) fail("socketpair %s: %m", names[i]);
    if (pipe(ctl)) fail("pipe: %m");
    pid_t c = test_fork();
    if (c == 0) {
        // In a pid namespace zdtm's SIGTERM reaches the whole group: the parent answers it.
        signal(SIGTERM, SIG_IGN);
        close(ctl[1]);
        for (int i = 0; i < 3; i++) {
            close(sp[i][0]);
            if (send(sp[i][1], "from-child", 10, 0) != 10) _exit(2);
            if (types[i] != SOCK_STREAM && send(sp[i][1], "second", 6, 0) != 6) _exit(2);
        }
        char x;
        ssize_t r;
        while ((r = read(ctl[0], &x, 1)) < 0 && errno == EINTR) {}
        if (r != 1) _exit(3);  // after restore
        int bad = 0;
        for (int i = 0; i < 3; i++) {
            if (types[i] == SOCK_STREAM) bad |= expect(sp[i][1], "from-parentagain", names[i]);
            else { bad |= expect(sp[i][1], "from-parent", names[i]); bad |= expect(sp[i][1], "again", names[i]); }
        }
        _exit(bad ? 4 : 0);
    }
    close(ctl[0]);
    for (int i = 0; i < 3; i++) {
        close(sp[i][1]);
        if (send(sp[i][0], "from-parent", 11, 0) != 11) fail("send: %m");
        if (send(sp[i][0], "again", 5, 0) != 5) fail("send: %m");
    }
    usleep(100000);  // the child's sends are queued
    test_daemon();
    test_waitsig();
    for (int i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof(what), "%s from the child", names[i]);
        if (types[i] == SOCK_STREAM) expect(sp[i][0], "from-child", what);
        else { expect(sp[i][0], "from-child", what); expect(sp[i][0], "second", what); }
    }
    if (write(ctl[1], "g", 1) != 1) fail("write: %m");
    int st;
    if (waitpid(c, &st, 0) != c) fail("waitpid: %m");
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child found its queues wrong (status %#x)", st);
    return test_report();
}
