// Changes its address space all the time, so that after a lazy restore it does so while its
// pages are still missing: forks a child that checks every page of a region, moves a region
// with mremap (and back), unmaps half of one and maps it again, discards part of one with
// madvise(MADV_DONTNEED). Every page carries a pattern of its own and is checked after each
// change; a page served to the wrong place, or brought back after it was dropped, fails.
// Argument: MiB of the region the children check (default 16).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL
#define SMALL (4UL << 20)

static uint64_t word(uint64_t seed, size_t page, size_t w) { return pattern_word(seed * 0x9e3779b97f4a7c15ULL + page, w); }

static void fill(char *m, size_t len, uint64_t seed) {
    for (size_t p = 0; p < len / PG; p++)
        for (size_t w = 0; w < PG / 8; w++) ((uint64_t *)(m + p * PG))[w] = word(seed, p, w);
}

// The first wrong page of [m + from, m + from + len), counted from m, or -1.
static long check_at(const char *m, size_t from, size_t len, uint64_t seed) {
    for (size_t p = from / PG; p < (from + len) / PG; p++)
        for (size_t w = 0; w < PG / 8; w++)
            if (((const uint64_t *)(m + p * PG))[w] != word(seed, p, w)) return (long)p;
    return -1;
}

static long check(const char *m, size_t len, uint64_t seed) { return check_at(m, 0, len, seed); }

static long nonzero(const char *m, size_t len) {
    for (size_t p = 0; p < len / PG; p++)
        for (size_t w = 0; w < PG / 8; w++)
            if (((const uint64_t *)(m + p * PG))[w]) return (long)p;
    return -1;
}

/* The stop signal (SIGTERM) may land while a child still checks its pages: wait on. */
static pid_t reap(pid_t child, int *st) {
    pid_t r;
    while ((r = waitpid(child, st, 0)) < 0 && errno == EINTR) {}
    return r;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    size_t big = (zt_argc > 1 ? strtoul(zt_argv[1], NULL, 10) : 16) << 20;
    // The small regions first: mmap goes down, so the big one sits below them and a
    // background fill that starts low reaches them last.
    char *moving = mmap(NULL, SMALL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *spare = mmap(NULL, SMALL, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *unmapped = mmap(NULL, SMALL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *advised = mmap(NULL, SMALL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *checked = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (moving == MAP_FAILED || spare == MAP_FAILED || unmapped == MAP_FAILED || advised == MAP_FAILED || checked == MAP_FAILED) fail("mmap: %m");
    fill(moving, SMALL, 1);
    fill(unmapped, SMALL, 2);
    fill(advised, SMALL, 3);
    fill(checked, big, 4);
    char *homes[2] = { moving, spare };
    int at = 0;
    unsigned long cycles = 0;
    pid_t child = 0;
    test_daemon();
    while (!test_stopped() && !test_failed()) {
        long bad;
        // mremap: the pages follow the mapping to its other home.
        char *to = homes[at ^ 1];
        char *got = mremap(homes[at], SMALL, SMALL, MREMAP_MAYMOVE | MREMAP_FIXED, to);
        if (got != to) { fail("cycle %lu: mremap to %p: %m", cycles, (void *)to); break; }
        at ^= 1;
        // The old home must not stay a hole another mapping could take: reserve it again.
        if (mmap(homes[at ^ 1], SMALL, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED) { fail("mmap reserve: %m"); break; }
        if ((bad = check(to, SMALL, 1)) >= 0) { fail("cycle %lu: page %ld wrong after mremap", cycles, bad); break; }
        // munmap the second half and map it again: it must read zero, not what was there.
        if (munmap(unmapped + SMALL / 2, SMALL / 2)) { fail("munmap: %m"); break; }
        if (mmap(unmapped + SMALL / 2, SMALL / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) { fail("mmap: %m"); break; }
        if ((bad = nonzero(unmapped + SMALL / 2, SMALL / 2)) >= 0) { fail("cycle %lu: page %ld of a fresh mapping is not zero", cycles, bad + (long)(SMALL / 2 / PG)); break; }
        if ((bad = check(unmapped, SMALL / 2, 2)) >= 0) { fail("cycle %lu: page %ld wrong next to munmap", cycles, bad); break; }
        fill(unmapped, SMALL, 2);
        // madvise(DONTNEED) of the middle: zero there, the rest intact.
        if (madvise(advised + SMALL / 4, SMALL / 2, MADV_DONTNEED)) { fail("madvise: %m"); break; }
        if ((bad = nonzero(advised + SMALL / 4, SMALL / 2)) >= 0) { fail("cycle %lu: page %ld not zero after MADV_DONTNEED", cycles, bad + (long)(SMALL / 4 / PG)); break; }
        if ((bad = check(advised, SMALL / 4, 3)) >= 0 || (bad = check_at(advised, SMALL * 3 / 4, SMALL / 4, 3)) >= 0) { fail("cycle %lu: page %ld wrong around MADV_DONTNEED", cycles, bad); break; }
        fill(advised, SMALL, 3);
        // fork: the child sees every page as the parent has it. The previous cycle's child is
        // reaped only now, so a restore caught while it checks still changes the parent first.
        if (child > 0) {
            int st;
            if (reap(child, &st) != child) { fail("wait: %m"); break; }
            if (!WIFEXITED(st) || WEXITSTATUS(st)) { fail("cycle %lu: the forked child found a wrong page (status 0x%x)", cycles, st); break; }
        }
        child = test_fork();
        if (child == 0) _exit(check(checked, big, 4) >= 0 ? 1 : 0);
        if (child < 0) { fail("fork: %m"); break; }
        cycles++;
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
    }
    long bad;
    if (child > 0) {
        int st;
        if (reap(child, &st) != child) fail("wait: %m");
        else if (!WIFEXITED(st) || WEXITSTATUS(st)) fail("the last forked child found a wrong page (status 0x%x)", st);
    }
    if (!test_failed()) {
        if ((bad = check(homes[at], SMALL, 1)) >= 0) fail("moved region: page %ld wrong", bad);
        else if ((bad = check(unmapped, SMALL, 2)) >= 0) fail("unmapped region: page %ld wrong", bad);
        else if ((bad = check(advised, SMALL, 3)) >= 0) fail("advised region: page %ld wrong", bad);
        else if ((bad = check(checked, big, 4)) >= 0) fail("checked region: page %ld wrong", bad);
    }
    return test_report();
}
