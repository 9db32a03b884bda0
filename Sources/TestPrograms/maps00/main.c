// Private anonymous mappings of several sizes, with holes and read-only parts, keep their
// contents, addresses and permissions.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

struct region { size_t pages; int final_prot; char *addr; };

static int perms_of(void *addr, char out[5]) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    unsigned long s, e;
    char p[5];
    int found = -1;
    while (fscanf(f, "%lx-%lx %4s %*[^\n]", &s, &e, p) == 3) {
        if ((unsigned long)addr >= s && (unsigned long)addr < e) { memcpy(out, p, 5); found = 0; break; }
    }
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    struct region r[] = { {1, PROT_READ | PROT_WRITE}, {16, PROT_READ}, {257, PROT_READ | PROT_WRITE},
                          {3, PROT_NONE}, {1024, PROT_READ | PROT_WRITE | PROT_EXEC} };
    int n = sizeof(r) / sizeof(r[0]);
    test_init(argc, argv);
    for (int i = 0; i < n; i++) {
        size_t len = r[i].pages * 4096;
        r[i].addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r[i].addr == MAP_FAILED) fail("mmap %zu pages: %m", r[i].pages);
        datagen(r[i].addr, len, 100 + i);
        // A hole in the middle of the big one: untouched pages must stay zero.
        if (r[i].pages == 1024) memset(r[i].addr + 100 * 4096, 0, 200 * 4096);
        if (mprotect(r[i].addr, len, r[i].final_prot)) fail("mprotect: %m");
    }
    test_daemon();
    test_waitsig();
    for (int i = 0; i < n; i++) {
        size_t len = r[i].pages * 4096;
        const char *want = r[i].final_prot == PROT_READ ? "r--p" : r[i].final_prot == PROT_NONE ? "---p" :
                           r[i].final_prot & PROT_EXEC ? "rwxp" : "rw-p";
        char got[5] = "????";
        if (perms_of(r[i].addr, got)) { fail("region %d at %p is gone", i, r[i].addr); continue; }
        if (strcmp(got, want)) fail("region %d at %p: perms %s, expected %s", i, r[i].addr, got, want);
        if (r[i].final_prot == PROT_NONE) {
            mprotect(r[i].addr, len, PROT_READ);
        }
        if (r[i].pages == 1024) {
            for (size_t off = 100 * 4096; off < 300 * 4096; off++)
                if (r[i].addr[off]) { fail("region %d: hole byte at +%zu is %d", i, off, r[i].addr[off]); break; }
            long bad = datachk(r[i].addr, 100 * 4096, 100 + i);
            if (bad >= 0) fail("region %d: data differs at +%ld", i, bad);
            uint64_t *w = (uint64_t *)r[i].addr;
            for (size_t k = 300 * 4096 / 8; k < len / 8; k++)
                if (w[k] != pattern_word(100 + i, k)) { fail("region %d: data differs at +%zu", i, k * 8); break; }
            continue;
        }
        long bad = datachk(r[i].addr, len, 100 + i);
        if (bad >= 0) fail("region %d (%zu pages at %p): data differs at +%ld", i, r[i].pages, r[i].addr, bad);
    }
    return test_report();
}
