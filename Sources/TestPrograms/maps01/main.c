// A file mapped privately, partly written (copy-on-write) and partly mprotect'ed: written
// pages keep the new data, untouched pages show the file, the mapping still refers to the
// file, and the file itself is unchanged on disk.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG 4096UL
#define PAGES 64

static char path[PATH_MAX];
static unsigned long ino;

// Pages [from, to) of the mapping are mapped from our file with these permissions at the right offset.
static void check_part(char *m, int from, int to, const char *perms) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[PATH_MAX + 128];
    unsigned long want = (unsigned long)(m + from * PG), end = (unsigned long)(m + to * PG);
    while (f && want < end && fgets(line, sizeof(line), f)) {
        unsigned long s, e, off, i;
        char p[5], file[PATH_MAX] = "";
        if (sscanf(line, "%lx-%lx %4s %lx %*s %lu %s", &s, &e, p, &off, &i, file) < 5) continue;
        if (e <= want || s > want) continue;
        if (strcmp(p, perms)) fail("pages %d..%d at %#lx: perms %s, expected %s", from, to, want, p, perms);
        else if (i != ino || strcmp(file, path)) fail("pages %d..%d: mapped from inode %lu '%s', expected %lu '%s'", from, to, i, file, ino, path);
        else if (off + (want - s) != (want - (unsigned long)m)) fail("pages %d..%d: file offset %#lx, expected %#lx", from, to, off + (want - s), want - (unsigned long)m);
        else { want = e; continue; }
        fclose(f);
        return;
    }
    if (f) fclose(f);
    if (want < end) fail("pages %d..%d: %#lx is not mapped", from, to, want);
}

static void check_layout(char *m) {
    check_part(m, 0, 20, "rw-p");
    check_part(m, 20, 24, "r--p");
    check_part(m, 24, 30, "rw-p");
    check_part(m, 30, 32, "---p");
    check_part(m, 32, PAGES, "rw-p");
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    static char buf[PAGES * PG];
    datagen(buf, sizeof(buf), 7);
    int fd = open("maps01.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, sizeof(buf)) != sizeof(buf)) fail("create maps01.data: %m");
    if (!realpath("maps01.data", path)) fail("realpath: %m");
    struct stat st;
    fstat(fd, &st);
    ino = st.st_ino;
    char *m = mmap(NULL, sizeof(buf), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) fail("mmap: %m");
    close(fd);
    // Read every page (page cache), then write pages 8..15 and 22 (private copies; 22 is then
    // made read-only, so it is a COW page inside a read-only part).
    volatile char sink = 0;
    for (int i = 0; i < PAGES; i++) sink += m[i * PG];
    datagen(m + 8 * PG, 8 * PG, 99);
    datagen(m + 22 * PG, PG, 98);
    if (mprotect(m + 20 * PG, 4 * PG, PROT_READ)) fail("mprotect read: %m");
    if (mprotect(m + 30 * PG, 2 * PG, PROT_NONE)) fail("mprotect none: %m");
    check_layout(m);
    test_daemon();
    test_waitsig();

    check_layout(m);
    mprotect(m + 30 * PG, 2 * PG, PROT_READ);
    datachk_fail("written pages 8..15", m + 8 * PG, 8 * PG, 99);
    datachk_fail("written read-only page 22", m + 22 * PG, PG, 98);
    for (int p = 0; p < PAGES; p++) {
        if ((p >= 8 && p < 16) || p == 22) continue;
        if (memcmp(m + p * PG, buf + p * PG, PG)) { fail("untouched page %d differs from the file", p); break; }
    }
    int fd2 = open("maps01.data", O_RDONLY);
    static char disk[PAGES * PG];
    if (fd2 < 0 || read(fd2, disk, sizeof(disk)) != sizeof(disk)) fail("re-read maps01.data: %m");
    else if (memcmp(disk, buf, sizeof(buf))) fail("maps01.data changed on disk");
    return test_report();
}
