// Private anonymous mappings of several sizes, with unmapped holes, never-touched pages and
// read-only/none/exec parts, keep their contents, addresses and permissions.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define PG 4096UL

struct seg { const char *name; char *addr; size_t pages; const char *perms; enum { DATA, ZERO, HOLE } kind; uint64_t seed; };

static struct { unsigned long s, e; char p[5]; } vmas[4096];
static int nvmas;

static void load_maps(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    nvmas = 0;
    if (!f) { fail("open /proc/self/maps: %m"); return; }
    char line[512];
    while (nvmas < 4096 && fgets(line, sizeof(line), f))
        if (sscanf(line, "%lx-%lx %4s", &vmas[nvmas].s, &vmas[nvmas].e, vmas[nvmas].p) == 3) nvmas++;
    fclose(f);
}

// Every page of the segment is mapped with the expected permissions (or, for a hole, nothing is).
static void check_layout(const struct seg *g) {
    unsigned long s = (unsigned long)g->addr, e = s + g->pages * PG, at = s;
    for (int i = 0; i < nvmas; i++) {
        if (vmas[i].e <= s || vmas[i].s >= e) continue;
        if (g->kind == HOLE) { fail("%s: hole %#lx-%#lx is mapped again (%#lx-%#lx %s)", g->name, s, e, vmas[i].s, vmas[i].e, vmas[i].p); return; }
        if (vmas[i].s > at) break;
        if (strcmp(vmas[i].p, g->perms)) { fail("%s at %#lx: perms %s, expected %s", g->name, at, vmas[i].p, g->perms); return; }
        at = vmas[i].e;
    }
    if (g->kind != HOLE && at < e) fail("%s: %#lx-%#lx not mapped (expected %s)", g->name, at, e, g->perms);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    char *a = mmap(NULL, 1 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *c = mmap(NULL, 257 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *d = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *e = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *big = mmap(NULL, 1024 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED || c == MAP_FAILED || d == MAP_FAILED || e == MAP_FAILED || big == MAP_FAILED)
        fail("mmap: %m");
    struct seg segs[] = {
        { "a (1 page rw)", a, 1, "rw-p", DATA, 101 },
        { "b (16 pages r)", b, 16, "r--p", DATA, 102 },
        { "c (257 pages rw)", c, 257, "rw-p", DATA, 103 },
        { "d (3 pages none)", d, 3, "---p", DATA, 104 },
        { "e (8 pages r-x)", e, 8, "r-xp", DATA, 105 },
        { "big[0..100)", big, 100, "rw-p", DATA, 106 },
        { "big[100..300) hole", big + 100 * PG, 200, "", HOLE, 0 },
        { "big[300..400)", big + 300 * PG, 100, "rw-p", DATA, 107 },
        { "big[400..500) untouched", big + 400 * PG, 100, "rw-p", ZERO, 0 },
        { "big[500..600)", big + 500 * PG, 100, "rw-p", DATA, 108 },
        { "big[600..700) read-only", big + 600 * PG, 100, "r--p", DATA, 109 },
        { "big[700..1000)", big + 700 * PG, 300, "rw-p", DATA, 110 },
        { "big[1000..1024) untouched", big + 1000 * PG, 24, "rw-p", ZERO, 0 },
    };
    int n = sizeof(segs) / sizeof(segs[0]);
    for (int i = 0; i < n; i++)
        if (segs[i].kind == DATA) datagen(segs[i].addr, segs[i].pages * PG, segs[i].seed);
    if (munmap(big + 100 * PG, 200 * PG)) fail("munmap hole: %m");
    if (mprotect(b, 16 * PG, PROT_READ) || mprotect(d, 3 * PG, PROT_NONE) || mprotect(e, 8 * PG, PROT_READ | PROT_EXEC) ||
        mprotect(big + 600 * PG, 100 * PG, PROT_READ))
        fail("mprotect: %m");
    load_maps();
    for (int i = 0; i < n; i++) check_layout(&segs[i]);
    test_daemon();
    test_waitsig();

    load_maps();
    for (int i = 0; i < n; i++) check_layout(&segs[i]);
    mprotect(d, 3 * PG, PROT_READ);
    for (int i = 0; i < n; i++) {
        struct seg *g = &segs[i];
        if (g->kind == DATA) datachk_fail(g->name, g->addr, g->pages * PG, g->seed);
        if (g->kind == ZERO) {
            const uint64_t *w = (const uint64_t *)g->addr;
            for (size_t k = 0; k < g->pages * PG / 8; k++)
                if (w[k]) { fail("%s: never-written word at +%#zx is %#llx, expected 0", g->name, k * 8, (unsigned long long)w[k]); break; }
        }
    }
    return test_report();
}
