// Writes memory without pause while it is dumped: N MiB (first argument, default 32) of pages,
// rewritten at RATE pages per millisecond (second argument, default 64; 0 = as fast as it
// can). Each page carries its own generation and a pattern derived from it, and a table in
// another mapping records the generation each page should have: a page restored from an
// older snapshot than the table (a write the incremental dump missed) or a torn page fails.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PG 4096UL

static void fill_page(uint64_t *p, uint64_t idx, uint64_t gen) {
    p[0] = gen;
    p[1] = idx;
    for (size_t w = 2; w < PG / 8; w++) p[w] = pattern_word(idx * 0x10001 + gen, w);
}

static int page_ok(const uint64_t *p, uint64_t idx) {
    if (p[1] != idx) return 0;
    for (size_t w = 2; w < PG / 8; w++) if (p[w] != pattern_word(idx * 0x10001 + p[0], w)) return 0;
    return 1;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    size_t mib = zt_argc > 1 ? strtoul(zt_argv[1], NULL, 10) : 32;
    long rate = zt_argc > 2 ? strtol(zt_argv[2], NULL, 10) : 64;
    size_t npages = (mib << 20) / PG;
    char *mem = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *table = mmap(NULL, npages * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED || table == MAP_FAILED) fail("mmap: %m");
    for (size_t i = 0; i < npages; i++) { fill_page((uint64_t *)(mem + i * PG), i, 1); table[i] = 1; }
    // The page being rewritten when a snapshot was taken may be one generation ahead of the table.
    volatile size_t inflight = (size_t)-1;
    uint64_t x = 88172645463325252ULL, writes = 0;
    test_daemon();
    while (!test_stopped()) {
        for (long k = 0; k < (rate > 0 ? rate : 4096) && !test_stopped(); k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            size_t i = x % npages;
            inflight = i;
            fill_page((uint64_t *)(mem + i * PG), i, table[i] + 1);
            table[i]++;
            inflight = (size_t)-1;
            writes++;
        }
        if (rate > 0) { struct timespec ts = { 0, 1000000 }; nanosleep(&ts, NULL); }
    }
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < npages; i++) {
        const uint64_t *p = (const uint64_t *)(mem + i * PG);
        int ok = page_ok(p, i) && (p[0] == table[i] || (i == inflight && p[0] == table[i] + 1));
        if (!ok && bad++ == 0) first = i;
    }
    if (bad) {
        const uint64_t *p = (const uint64_t *)(mem + first * PG);
        fail("%zu of %zu pages wrong after %lu writes; first: page %zu holds generation %lu (index %lu), table says %lu",
             bad, npages, (unsigned long)writes, first, (unsigned long)p[0], (unsigned long)p[1], (unsigned long)table[first]);
    }
    return test_report();
}
