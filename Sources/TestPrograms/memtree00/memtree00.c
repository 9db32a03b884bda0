// A tree of N processes (first extra argument, default 8), each writing M MiB of its own
// (second, default 4) after the fork, so nothing is shared. Each checks its memory after
// SIGTERM; the root collects the children's verdicts. The benchmark's tree subject.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char *fill(size_t len, uint64_t seed) {
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    datagen(m, len, seed);
    return m;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int n = zt_argc > 1 ? atoi(zt_argv[1]) : 8;
    size_t len = (zt_argc > 2 ? strtoul(zt_argv[2], NULL, 10) : 4) << 20;
    if (n < 1 || n > 1024) fail("bad process count %d", n);
    int ready[2];
    if (pipe(ready)) fail("pipe: %m");
    pid_t *kids = calloc(n, sizeof(pid_t));
    for (int i = 1; i < n; i++) {
        kids[i] = test_fork();
        if (kids[i] == 0) {
            close(ready[0]);
            char *m = fill(len, 5000 + i);
            char c = m ? 1 : 0;
            write(ready[1], &c, 1);
            close(ready[1]);
            test_waitsig();
            _exit(m && datachk(m, len, 5000 + i) < 0 ? 0 : 1);
        }
    }
    close(ready[1]);
    for (int i = 1; i < n; i++) {
        char c = 0;
        if (read(ready[0], &c, 1) != 1 || !c) fail("child %d could not set up", i);
    }
    // EOF: every child has closed its end too, so the tree holds still from here on.
    char c;
    if (read(ready[0], &c, 1) != 0) fail("a child wrote twice on the ready pipe");
    close(ready[0]);
    char *mine = fill(len, 5000);
    if (!mine) fail("mmap: %m");
    test_daemon();
    test_waitsig();
    datachk_fail("root's memory", mine, len, 5000);
    for (int i = 1; i < n; i++) {
        kill(kids[i], SIGTERM);
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st))
            fail("child %d (pid %d) found its memory wrong (status %#x)", i, kids[i], st);
    }
    return test_report();
}
