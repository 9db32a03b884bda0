// Processes blocked in syscalls at the dump must come back inside them: the root sits in
// read() on a pipe its child writes to only after SIGTERM, a second child sits in waitpid()
// for a grandchild that exits only then. Neither call may return early, fail, or lose the
// data or the status that finally arrives.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    int p[2];
    if (pipe(p)) fail("pipe: %m");
    pid_t writer = test_fork();
    if (writer == 0) {
        close(p[0]);
        test_waitsig();
        const char msg[] = "written after restore";
        _exit(write(p[1], msg, sizeof(msg)) == sizeof(msg) ? 0 : 1);
    }
    close(p[1]);
    pid_t waiter = test_fork();
    if (waiter == 0) {
        pid_t last = test_fork();
        if (last == 0) {
            test_waitsig();
            _exit(42);
        }
        int st;
        for (;;) {
            pid_t r = waitpid(last, &st, 0);
            if (r == last) break;
            if (r < 0 && errno == EINTR) {
                // Only SIGTERM may interrupt us, and it may come more than once (the ns
                // flavour's init signals every process, and the root forwards its own).
                if (!test_stopped()) _exit(5);
                kill(last, SIGTERM);
                continue;
            }
            _exit(3);  // waitpid failed outright
        }
        _exit(!WIFEXITED(st) || WEXITSTATUS(st) != 42 ? 4 : 0);
    }
    test_daemon();
    char buf[64];
    ssize_t n;
    int interrupted = 0;
    for (;;) {
        n = read(p[0], buf, sizeof(buf));
        if (n >= 0) break;
        if (errno != EINTR) { fail("read on the pipe failed: %m"); break; }
        // SIGTERM interrupts the read: now the children may finish.
        if (!test_stopped()) { fail("read() returned EINTR before SIGTERM (a broken restart)"); break; }
        if (!interrupted++) { kill(writer, SIGTERM); kill(waiter, SIGTERM); }
    }
    if (n > 0 && strcmp(buf, "written after restore")) fail("read %zd bytes: '%.*s'", n, (int)n, buf);
    if (n == 0) fail("read() saw EOF: the writer is gone");
    int st;
    if (waitpid(writer, &st, 0) != writer || !WIFEXITED(st) || WEXITSTATUS(st)) fail("writer: status %#x", st);
    if (!interrupted) { kill(waiter, SIGTERM); }
    if (waitpid(waiter, &st, 0) != waiter || !WIFEXITED(st)) fail("waiter: status %#x", st);
    else if (WEXITSTATUS(st) == 5) fail("waitpid() returned EINTR before SIGTERM (a broken restart)");
    else if (WEXITSTATUS(st)) fail("waiter: verdict %d", WEXITSTATUS(st));
    return test_report();
}
