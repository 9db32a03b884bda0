// Writes into its memory without pause, so that after a lazy restore it writes pages that are
// still missing: whole pages and single words (the rest of the page must be what it was).
// Each page holds its index, a write counter and a body generation with a pattern derived
// from it; a table in another mapping says what each page must hold, and every page is checked
// before it is written. Arguments: MiB (default 32), writes per millisecond (default 256).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define PG 4096UL

static void body(uint64_t *p, uint64_t idx, uint64_t gen) {
    for (size_t w = 3; w < PG / 8; w++) p[w] = pattern_word(idx * 0x10001 + gen, w);
}

static int page_ok(const uint64_t *p, uint64_t idx, uint64_t count, uint64_t gen) {
    if (p[0] != count || p[1] != idx || p[2] != gen) return 0;
    for (size_t w = 3; w < PG / 8; w++) if (p[w] != pattern_word(idx * 0x10001 + gen, w)) return 0;
    return 1;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    size_t mib = zt_argc > 1 ? strtoul(zt_argv[1], NULL, 10) : 32;
    long rate = zt_argc > 2 ? strtol(zt_argv[2], NULL, 10) : 256;
    size_t npages = (mib << 20) / PG;
    char *mem = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *table = mmap(NULL, npages * 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED || table == MAP_FAILED) fail("mmap: %m");
    for (size_t i = 0; i < npages; i++) {
        uint64_t *p = (uint64_t *)(mem + i * PG);
        p[0] = 1; p[1] = i; p[2] = 1; body(p, i, 1);
        table[2 * i] = 1; table[2 * i + 1] = 1;
    }
    uint64_t x = 0x2545F4914F6CDD1DULL, writes = 0;
    test_daemon();
    while (!test_stopped() && !test_failed()) {
        for (long k = 0; k < rate && !test_stopped(); k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            size_t i = x % npages;
            uint64_t *p = (uint64_t *)(mem + i * PG);
            if (!page_ok(p, i, table[2 * i], table[2 * i + 1])) {
                fail("after %lu writes: page %zu holds count %lu gen %lu (index %lu), expected count %lu gen %lu",
                     (unsigned long)writes, i, (unsigned long)p[0], (unsigned long)p[2], (unsigned long)p[1],
                     (unsigned long)table[2 * i], (unsigned long)table[2 * i + 1]);
                break;
            }
            if (x & (1ULL << 40)) {  // a whole new page
                table[2 * i + 1]++;
                p[2] = table[2 * i + 1];
                body(p, i, table[2 * i + 1]);
            }
            table[2 * i]++;
            p[0] = table[2 * i];  // one word: the rest of the page stays
            writes++;
        }
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < npages && !test_failed(); i++)
        if (!page_ok((const uint64_t *)(mem + i * PG), i, table[2 * i], table[2 * i + 1]) && bad++ == 0) first = i;
    if (bad) fail("%zu of %zu pages wrong after %lu writes; first: page %zu", bad, npages, (unsigned long)writes, first);
    return test_report();
}
