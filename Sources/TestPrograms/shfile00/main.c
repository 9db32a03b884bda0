// Shared file mappings: the parent maps a file MAP_SHARED (then closes the fd) and forks; the
// child opens the same file apart and maps part of it MAP_SHARED at an offset; the parent also
// has a read-only shared view. After restore each mapping is still the file itself: what one
// process writes, the other's mapping and pread() of the file both see, the mappings keep their
// offsets and the 's' flag, and bytes written before the dump are in the file.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define PAGES 8

static char path[PATH_MAX];

// The line of /proc/self/maps that holds `addr` must name the file, at page offset `pgoff`,
// shared ('s') and with `perm` ("rw"/"r-").
static void check_map(const char *who, void *addr, unsigned long pgoff, const char *perm) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) { fail("%s: /proc/self/maps: %m", who); return; }
    char line[PATH_MAX + 128];
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long from, to, off;
        char p[5], file[PATH_MAX] = "";
        if (sscanf(line, "%lx-%lx %4s %lx %*s %*s %s", &from, &to, p, &off, file) < 4) continue;
        if ((unsigned long)addr < from || (unsigned long)addr >= to) continue;
        found = 1;
        if (strcmp(file, path)) fail("%s: mapped from '%s', expected '%s'", who, file, path);
        if (p[3] != 's') fail("%s: mapping is %s, expected shared", who, p);
        if (strncmp(p, perm, 2)) fail("%s: permissions %s, expected %s", who, p, perm);
        if (off + ((unsigned long)addr - from) != pgoff * PG) fail("%s: file offset %#lx, expected %#lx", who, off + ((unsigned long)addr - from), pgoff * PG);
    }
    fclose(f);
    if (!found) fail("%s: %p no longer mapped", who, addr);
}

static int same_as_file(int fd, const char *mem, off_t off, size_t len) {
    char buf[PG];
    for (size_t done = 0; done < len; done += PG) {
        if (pread(fd, buf, PG, off + done) != PG) return 0;
        if (memcmp(buf, mem + done, PG)) return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int fd = open("shfile00.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, PAGES * PG)) fail("shfile00.data: %m");
    if (!realpath("shfile00.data", path)) fail("realpath: %m");
    char *a = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (a == MAP_FAILED) fail("mmap: %m");
    close(fd);  // the mapping alone keeps the file
    datagen(a, PAGES * PG, 41);
    pid_t child = test_fork();
    if (child == 0) {
        int cfd = open(path, O_RDWR);
        char *b = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 2 * PG);  // pages 2..5
        if (cfd < 0 || b == MAP_FAILED) _exit(10);
        close(cfd);
        datagen(b, PG, 42);  // page 2, seen by the parent
        test_waitsig();
        check_map("child's view", b, 2, "rw");
        if (datachk(b, PG, 42) >= 0) _exit(2);
        volatile uint64_t *parent_mark = (uint64_t *)(b + PG);  // page 3
        if (*parent_mark != 0x1234) _exit(3);
        *(volatile uint64_t *)(b + 3 * PG) = 0x5678;  // page 5
        _exit(test_report() ? 4 : 0);
    }
    char *ro = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, open(path, O_RDONLY), 6 * PG);  // pages 6..7
    if (ro == MAP_FAILED) fail("mmap read-only: %m");
    char expect[PG];
    datagen(expect, PG, 42);
    while (memcmp(a + 2 * PG, expect, PG)) usleep(1000);
    datagen(a + 6 * PG, PG, 43);  // through the writable view, read through the read-only one
    test_daemon();
    test_waitsig();
    check_map("parent's view", a, 0, "rw");
    check_map("parent's read-only view", ro, 6, "r-");
    int rfd = open(path, O_RDONLY);
    if (rfd < 0) fail("%s: %m", path);
    if (!same_as_file(rfd, a, 0, PAGES * PG)) fail("the parent's mapping and the file differ: not the file's pages any more");
    if (datachk(a + 2 * PG, PG, 42) >= 0) fail("the child's page written before the dump is lost");
    if (memcmp(ro, a + 6 * PG, PG)) fail("the read-only view does not show what the writable one wrote");
    datagen(expect, PG, 43);
    if (memcmp(ro, expect, PG)) fail("page 6 lost its pattern");
    *(volatile uint64_t *)(a + 3 * PG) = 0x1234;
    kill(child, SIGTERM);
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st)) fail("child: status %#x", st);
    else if (WEXITSTATUS(st) == 3) fail("the child did not see the parent's write: its mapping is no longer the file");
    else if (WEXITSTATUS(st)) fail("child failed (%d)", WEXITSTATUS(st));
    if (*(volatile uint64_t *)(a + 5 * PG) != 0x5678) fail("the child's write did not reach the parent's mapping");
    uint64_t v = 0;
    if (pread(rfd, &v, 8, 5 * PG) != 8 || v != 0x5678) fail("the child's write did not reach the file");
    close(rfd);
    return test_report();
}
