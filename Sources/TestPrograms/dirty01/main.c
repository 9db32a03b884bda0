// Maps and unmaps regions all the time, also at the same addresses (a new mapping where an
// armed one was is not tracked and must be dumped whole), and writes into them. A region
// table says which slots are mapped and with which generation's pattern.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PG 4096UL
#define SLOTS 16
#define SLOT_PAGES 64

int main(int argc, char **argv) {
    test_init(argc, argv);
    size_t slot = SLOT_PAGES * PG;
    // A PROT_NONE reservation keeps the slots' addresses ours while they are unmapped.
    char *base = mmap(NULL, SLOTS * slot, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) fail("mmap reservation: %m");
    static uint64_t gen[SLOTS];       // 0: unmapped
    static size_t written[SLOTS];     // pages of the slot holding the pattern; the rest are zero
    uint64_t x = 0x9E3779B97F4A7C15ULL, ops = 0, next = 1;
    for (int s = 0; s < SLOTS; s += 2) {
        char *a = mmap(base + s * slot, slot, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (a == MAP_FAILED) fail("mmap slot %d: %m", s);
        gen[s] = next++;
        datagen(a, slot, gen[s]);
        written[s] = SLOT_PAGES;
    }
    test_daemon();
    while (!test_stopped()) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int s = x % SLOTS;
        char *a = base + s * slot;
        if (gen[s]) {
            if (datachk_fail("slot before unmap", a, written[s] * PG, gen[s])) break;
            // Back to the reservation: the address range stays ours, its pages are gone.
            if (mmap(a, slot, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED) { fail("unmap slot %d: %m", s); break; }
            gen[s] = 0;
            written[s] = 0;
        } else {
            if (mmap(a, slot, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) { fail("map slot %d: %m", s); break; }
            uint64_t g = next++;
            size_t n = 1 + (x >> 8) % SLOT_PAGES;  // sometimes only part of it
            datagen(a, n * PG, g);
            written[s] = n;
            gen[s] = g;
        }
        ops++;
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
    for (int s = 0; s < SLOTS && !test_failed(); s++) {
        if (!gen[s]) continue;
        char *a = base + s * slot;
        if (datachk_fail("mapped slot", a, written[s] * PG, gen[s])) { test_msg("slot %d, %lu operations", s, (unsigned long)ops); break; }
        for (size_t i = written[s] * PG; i < slot; i++)
            if (a[i]) { fail("slot %d: byte +%zu is %d, expected 0 (never written)", s, i, a[i]); break; }
    }
    return test_report();
}
