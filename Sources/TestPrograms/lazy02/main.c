// Splits and merges its VMAs all the time with mprotect, which sends no userfaultfd event:
// every cycle it makes one page in each MiB of a region read-only (a VMA of its own) and
// reads it, and gives the previous cycle's pages their write access back. After a lazy
// restore the first reads fault on missing pages whose VMA ends right after them, so a
// fault served with the pages that follow, or a background fill of a whole MiB, crosses
// a VMA boundary the lazy-pages daemon was never told about.
// Arguments: MiB (default 32).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define PG 4096UL
#define SLOT (1UL << 20)

static uint64_t seed_of(size_t page) { return page * 0x9e3779b97f4a7c15ULL + 7; }

static long check_page(const char *m, size_t page) {
    const uint64_t *p = (const uint64_t *)(m + page * PG);
    for (size_t w = 0; w < PG / 8; w++)
        if (p[w] != pattern_word(seed_of(page), w)) return (long)page;
    return -1;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    size_t mib = zt_argc > 1 ? strtoul(zt_argv[1], NULL, 10) : 32;
    size_t len = mib << 20, npages = len / PG, slots = len / SLOT, per = SLOT / PG;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t *prev = calloc(slots, sizeof(*prev));
    if (m == MAP_FAILED || !prev) fail("mmap: %m");
    for (size_t p = 0; p < npages; p++)
        for (size_t w = 0; w < PG / 8; w++) ((uint64_t *)(m + p * PG))[w] = pattern_word(seed_of(p), w);
    unsigned long cycle = 0;
    int armed = 0;
    test_daemon();
    while (!test_stopped() && !test_failed()) {
        // Never the first or last page of a slot, so each protected page splits a VMA in three.
        size_t off = 1 + (cycle * 37) % (per - 2);
        for (size_t s = 0; s < slots; s++) {
            size_t page = s * per + off;
            if (armed && mprotect(m + prev[s] * PG, PG, PROT_READ | PROT_WRITE)) { fail("mprotect rw: %m"); break; }
            if (mprotect(m + page * PG, PG, PROT_READ)) { fail("mprotect ro: %m"); break; }
            long bad = check_page(m, page);
            if (bad >= 0) { fail("cycle %lu: read-only page %ld wrong", cycle, bad); break; }
            prev[s] = page;
        }
        armed = 1;
        cycle++;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    if (!test_failed())
        for (size_t p = 0; p < npages; p++)
            if (check_page(m, p) >= 0) { fail("after %lu cycles: page %zu wrong", cycle, p); break; }
    return test_report();
}
