// A MAP_DROPPABLE mapping (Linux 6.11) stays droppable across C/R (VmFlags dp, not a plain
// private mapping), at the same address and size. Its pages may read as zero afterwards: the
// kernel may drop them at any time, and like CRIU, cryo does not keep them. A private mapping
// next to it keeps its data.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif

static int droppable_at(void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0, dp = 0;
    unsigned long want = (unsigned long)p;
    while (fgets(line, sizeof(line), f)) {
        unsigned long a, b;
        // A mapping's first line: "start-end perms ..."; the other lines start with a name.
        if (strncmp(line, "VmFlags:", 8) && sscanf(line, "%lx-%lx ", &a, &b) == 2) {
            in = a == want;
            continue;
        }
        if (in && !strncmp(line, "VmFlags:", 8)) { dp = strstr(line, " dp") != NULL; break; }
    }
    fclose(f);
    return dp;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    size_t len = 16 * 4096;
    char *d = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
    if (d == MAP_FAILED) fail("mmap(MAP_DROPPABLE): %m (Linux 6.11 or later needed)");
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("mmap: %m");
    memset(d, 0x5a, len);
    for (size_t i = 0; i < len; i++) p[i] = (char)(i * 7);
    if (droppable_at(d) != 1) fail("no dp in VmFlags before the dump");
    test_daemon();
    test_waitsig();
    if (droppable_at(d) != 1) fail("the mapping at %p is no longer MAP_DROPPABLE", d);
    for (size_t i = 0; i < len; i++)
        if (d[i] != 0 && d[i] != 0x5a) { fail("droppable byte %zu is %#x: neither kept nor dropped", i, d[i]); break; }
    memset(d, 0x33, len);
    if (d[len - 1] != 0x33) fail("droppable mapping not writable");
    for (size_t i = 0; i < len; i++)
        if (p[i] != (char)(i * 7)) { fail("private byte %zu lost", i); break; }
    return test_report();
}
