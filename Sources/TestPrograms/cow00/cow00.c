// Copy-on-write sharing: a parent fills 32 MiB, then forks two children. One leaves the
// memory alone (every page still shared with the parent), the other rewrites its first MiB.
// After restore each process sees exactly its own view: the untouched child the parent's
// bytes, the writer its own first MiB and the parent's rest, the parent its original bytes.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEN (32 << 20)
#define MIB (1 << 20)

static char *mem;

static int child(int writer) {
    if (writer) datagen(mem, MIB, 99);
    test_waitsig();
    if (writer) {
        if (datachk(mem, MIB, 99) >= 0) return 2;
        char *want = malloc(LEN);
        datagen(want, LEN, 1);
        int bad = memcmp(mem + MIB, want + MIB, LEN - MIB) != 0;
        free(want);
        return bad ? 3 : 0;
    }
    return datachk(mem, LEN, 1) >= 0 ? 4 : 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) fail("mmap: %m");
    datagen(mem, LEN, 1);
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = test_fork();
        if (kids[i] == 0) {
            _exit(child(i));
        }
    }
    // Give the writer time to rewrite its MiB before the dump can come.
    usleep(200 * 1000);
    test_daemon();
    test_waitsig();
    datachk_fail("parent's memory", mem, LEN, 1);
    for (int i = 0; i < 2; i++) {
        kill(kids[i], SIGTERM);
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st)) { fail("child %d: status %#x", kids[i], st); continue; }
        if (WEXITSTATUS(st)) fail("child %d (%s) found its memory wrong (verdict %d)", kids[i], i ? "writer" : "untouched", WEXITSTATUS(st));
    }
    return test_report();
}
