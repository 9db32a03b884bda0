// A file mapped privately, partly written (copy-on-write) and partly mprotect'ed: written
// pages keep the new data, untouched pages show the file, and the file itself is unchanged.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 64

int main(int argc, char **argv) {
    test_init(argc, argv);
    static char buf[PAGES * 4096];
    datagen(buf, sizeof(buf), 7);
    int fd = open("maps01.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, sizeof(buf)) != sizeof(buf)) fail("create maps01.data: %m");
    char *m = mmap(NULL, sizeof(buf), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) fail("mmap: %m");
    close(fd);
    // Read every page (page cache), then write pages 8..15 (private copies).
    volatile char sink = 0;
    for (int i = 0; i < PAGES; i++) sink += m[i * 4096];
    datagen(m + 8 * 4096, 8 * 4096, 99);
    if (mprotect(m + 20 * 4096, 4 * 4096, PROT_READ)) fail("mprotect read: %m");
    if (mprotect(m + 30 * 4096, 2 * 4096, PROT_NONE)) fail("mprotect none: %m");
    test_daemon();
    test_waitsig();

    mprotect(m + 30 * 4096, 2 * 4096, PROT_READ);
    long bad = datachk(m + 8 * 4096, 8 * 4096, 99);
    if (bad >= 0) fail("written pages differ at +%ld", bad + 8 * 4096);
    if (memcmp(m, buf, 8 * 4096)) fail("untouched pages 0..7 differ from the file");
    if (memcmp(m + 16 * 4096, buf + 16 * 4096, (PAGES - 16) * 4096)) fail("untouched pages 16.. differ from the file");
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int seen_ro = 0, seen_none = 0;
    unsigned long ro = (unsigned long)(m + 20 * 4096), none = (unsigned long)(m + 30 * 4096);
    while (f && fgets(line, sizeof(line), f)) {
        unsigned long s, e; char p[5];
        if (sscanf(line, "%lx-%lx %4s", &s, &e, p) != 3) continue;
        if (s == ro && e == ro + 4 * 4096 && !strcmp(p, "r--p")) seen_ro = 1;
        if (s == none && e == none + 2 * 4096 && !strcmp(p, "r--p")) seen_none = 1; // re-protected above
    }
    if (f) fclose(f);
    if (!seen_ro) fail("read-only part of the mapping lost its layout or permissions");
    if (!seen_none) fail("PROT_NONE part of the mapping lost its layout");
    int fd2 = open("maps01.data", O_RDONLY);
    static char disk[PAGES * 4096];
    if (fd2 < 0 || read(fd2, disk, sizeof(disk)) != sizeof(disk)) fail("re-read maps01.data: %m");
    else if (memcmp(disk, buf, sizeof(buf))) fail("maps01.data changed on disk");
    return test_report();
}
