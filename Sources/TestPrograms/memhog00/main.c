// N MiB (first extra argument, default 64) of written anonymous memory, verified after.
// The benchmark's subject, and a plain memory workload for zdtm.
// With a second argument P (per mille), each SIGUSR1 rewrites P/1000 of the pages, picked at
// random, and appends how long those writes took (seconds) to rewrite.times in the working
// folder: the incremental benchmark's workload, which measures what dirty tracking costs it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define PG 4096UL

static volatile sig_atomic_t rewrite_asked;
static void on_usr1(int sig) { (void)sig; rewrite_asked = 1; }

// A rewritten page holds one word repeated: cheap to write, so the timing is the writes' own.
static uint64_t rewrite_word(size_t page, uint32_t gen) { return (uint64_t)page * 0x100000001b3ULL + gen; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    size_t mib = zt_argc > 1 ? strtoul(zt_argv[1], NULL, 10) : 64;
    long permille = zt_argc > 2 ? strtol(zt_argv[2], NULL, 10) : 0;
    size_t len = mib << 20, npages = len / PG;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("mmap %zu MiB: %m", mib);
    datagen(m, len, 1024);
    uint32_t *gen = NULL;
    if (permille > 0) {
        gen = mmap(NULL, npages * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (gen == MAP_FAILED) fail("mmap generation table: %m");
        struct sigaction sa = { .sa_handler = on_usr1 };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
    }
    test_daemon();
    if (!gen) {
        test_waitsig();
    } else {
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigaddset(&block, SIGTERM);
        sigprocmask(SIG_BLOCK, &block, &old);
        uint64_t x = 0x853c49e6748fea9bULL;
        size_t count = npages * (size_t)permille / 1000;
        while (!zt_stop) {
            if (!rewrite_asked) { sigsuspend(&old); continue; }
            rewrite_asked = 0;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (size_t k = 0; k < count; k++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                size_t p = x % npages;
                uint64_t *w = (uint64_t *)(m + p * PG), v = rewrite_word(p, ++gen[p]);
                for (size_t i = 0; i < PG / 8; i++) w[i] = v;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            FILE *f = fopen("rewrite.times", "a");
            if (f) { fprintf(f, "%.9f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9); fclose(f); }
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    if (!gen) {
        long bad = datachk(m, len, 1024);
        if (bad >= 0) fail("%zu MiB region differs at +%ld", mib, bad);
    } else {
        for (size_t p = 0; p < npages && !test_failed(); p++) {
            const uint64_t *w = (const uint64_t *)(m + p * PG);
            for (size_t i = 0; i < PG / 8; i++) {
                uint64_t want = gen[p] ? rewrite_word(p, gen[p]) : pattern_word(1024, p * (PG / 8) + i);
                if (w[i] != want) { fail("page %zu (generation %u) differs at word %zu", p, gen[p], i); break; }
            }
        }
    }
    return test_report();
}
