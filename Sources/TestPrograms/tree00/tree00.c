// A tree: the root (a child subreaper) has a child in its own process group with a grandchild,
// a child that leads its own session, and an orphan it adopted when that orphan's parent
// exited. Each process keeps a memory pattern and checks its pid, parent, group and session
// after SIGTERM; the root collects the verdicts through exit codes.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

enum { OK = 0, BAD_PID = 10, BAD_PPID, BAD_PGRP, BAD_SID, BAD_MEM, BAD_CHILD };

struct self { pid_t pid, ppid, pgrp, sid; char *mem; size_t len; uint64_t seed; };

static struct self remember(uint64_t seed) {
    struct self s = { getpid(), getppid(), getpgrp(), getsid(0), NULL, 256 * 1024, seed };
    s.mem = malloc(s.len);
    datagen(s.mem, s.len, seed);
    return s;
}

static int verify(const struct self *s) {
    if (getpid() != s->pid) return BAD_PID;
    if (s->ppid && getppid() != s->ppid) return BAD_PPID;
    if (getpgrp() != s->pgrp) return BAD_PGRP;
    if (getsid(0) != s->sid) return BAD_SID;
    if (datachk(s->mem, s->len, s->seed) >= 0) return BAD_MEM;
    return OK;
}

static void wait_stop(void) {
    test_waitsig();
}

// Stops `pid` with SIGTERM and returns its verdict (the exit code), or BAD_CHILD.
static int collect(pid_t pid) {
    kill(pid, SIGTERM);
    int st;
    if (waitpid(pid, &st, 0) != pid) return BAD_CHILD;
    return WIFEXITED(st) ? WEXITSTATUS(st) : BAD_CHILD;
}

static int sync_fd[2];
static void started(void) {
    char c = 1;
    write(sync_fd[1], &c, 1);
    close(sync_fd[0]);
    close(sync_fd[1]);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (pipe(sync_fd)) fail("pipe: %m");
    struct self root = remember(1);
    root.ppid = 0;  // the launcher's starter exits once we are ready: not ours to check

    pid_t a = test_fork();
    if (a == 0) {  // child in its own group, with a grandchild
        setpgid(0, 0);
        pid_t g = test_fork();
        if (g == 0) {
            struct self me = remember(3);
            started();
            wait_stop();
            _exit(verify(&me));
        }
        struct self me = remember(2);
        started();
        wait_stop();
        int v = verify(&me), gv = collect(g);
        _exit(v ? v : gv ? 40 + gv : OK);
    }
    pid_t b = test_fork();
    if (b == 0) {  // session leader
        setsid();
        struct self me = remember(4);
        started();
        wait_stop();
        _exit(verify(&me));
    }
    pid_t c = test_fork();
    if (c == 0) {  // leaves an orphan behind for the subreaper
        pid_t o = test_fork();
        if (o == 0) {
            while (getppid() != root.pid) usleep(1000);
            struct self me = remember(5);
            started();
            wait_stop();
            _exit(verify(&me));
        }
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    for (int i = 0; i < 4; i++) {
        char ch;
        if (read(sync_fd[0], &ch, 1) != 1) fail("a process of the tree did not start");
    }
    // EOF: every process has also closed the pipe, so the tree holds still from here on.
    close(sync_fd[1]);
    char extra;
    if (read(sync_fd[0], &extra, 1) != 0) fail("the start pipe did not end");
    close(sync_fd[0]);
    test_daemon();
    test_waitsig();

    int v = verify(&root);
    if (v) fail("root: check %d failed", v);
    int av = collect(a);
    if (av) fail("child %d (own group) or its grandchild: verdict %d", a, av);
    int bv = collect(b);
    if (bv) fail("child %d (own session): verdict %d", b, bv);
    // The orphan is ours now: any child left is it.
    pid_t o = waitpid(-1, &st, WNOHANG);
    if (o != 0) fail("the orphan exited early (waitpid %d)", o);
    else {
        FILE *f = fopen("/proc/self/task/self/children", "r");
        int orphan = 0;
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/task/%d/children", getpid());
        if (f) fclose(f);
        f = fopen(path, "r");
        if (!f || fscanf(f, "%d", &orphan) != 1) fail("no adopted orphan among the children");
        if (f) fclose(f);
        if (orphan) {
            int ov = collect(orphan);
            if (ov) fail("adopted orphan %d: verdict %d", orphan, ov);
        }
    }
    return test_report();
}
