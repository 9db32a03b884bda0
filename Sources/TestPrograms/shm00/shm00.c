// MAP_SHARED anonymous memory shared by a parent and its child, plus one only the parent
// maps, at an offset into a bigger object. After restore both still see one object: what one
// writes, the other reads, and the patterns written before the dump are intact.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEN (4 << 20)
#define HALF (LEN / 2)

int main(int argc, char **argv) {
    test_init(argc, argv);
    char *shm = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) fail("mmap: %m");
    datagen(shm, HALF, 11);  // parent's half, written before fork
    volatile uint64_t *child_mark = (uint64_t *)(shm + LEN - 64);
    volatile uint64_t *parent_mark = (uint64_t *)(shm + LEN - 128);
    pid_t child = test_fork();
    if (child == 0) {
        datagen(shm + HALF, HALF - 4096, 22);  // the child's half, seen by the parent
        test_waitsig();
        if (datachk(shm, HALF, 11) >= 0) _exit(2);
        if (*parent_mark != 0x1234) _exit(3);  // written by the parent after restore
        *child_mark = 0x5678;
        _exit(0);
    }
    // The parent's own object: 3 pages mapped from offset 1 page of a 4-page object.
    char *big = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    datagen(big, 4 * 4096, 33);
    if (munmap(big, 4096)) fail("munmap: %m");
    char *part = big + 4096;
    while (datachk(shm + HALF, HALF - 4096, 22) >= 0) usleep(1000);
    mprotect(shm + HALF, 4096, PROT_READ);
    test_daemon();
    test_waitsig();
    if (datachk_fail("parent's half", shm, HALF, 11)) {}
    if (datachk_fail("child's half", shm + HALF, HALF - 4096, 22)) {}
    char whole[4 * 4096];
    datagen(whole, sizeof(whole), 33);
    if (memcmp(part, whole + 4096, 3 * 4096)) fail("the parent's partly unmapped shared object lost its bytes");
    *parent_mark = 0x1234;
    kill(child, SIGTERM);
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st)) fail("child: status %#x", st);
    else if (WEXITSTATUS(st) == 3) fail("the child did not see the parent's write: memory no longer shared");
    else if (WEXITSTATUS(st)) fail("the child found its view of the parent's half damaged (%d)", WEXITSTATUS(st));
    if (*child_mark != 0x5678) fail("the child's write did not reach the parent: memory no longer shared");
    return test_report();
}
