// fds of shared anonymous memory, opened through /proc/self/map_files (they read
// "/dev/zero (deleted)" and live on the kernel's shmem mount): one whose mapping is gone,
// with contents, size, offset and O_APPEND, and one whose mapping is still there, which must
// stay the same object as the mapping after restore (a write through one shows in the other).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEN (64 << 10)

static int open_mapping(void *addr, size_t len, int flags) {
    char path[128];
    snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)addr, (unsigned long)addr + len);
    int fd = open(path, flags);
    if (fd < 0) fail("open %s: %m", path);
    return fd;
}

static void check_link(int fd, const char *what) {
    char p[64], link[256];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, link, sizeof(link) - 1);
    if (n < 0) fail("%s: readlink: %m", what);
    link[n] = 0;
    if (strcmp(link, "/dev/zero (deleted)")) fail("%s: fd reads \"%s\", not \"/dev/zero (deleted)\"", what, link);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    // fd only: the mapping is gone; 5 bytes, offset 3, O_APPEND.
    void *a = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) fail("mmap: %m");
    int lone = open_mapping(a, 4096, O_RDWR);
    if (ftruncate(lone, 0)) fail("ftruncate: %m");
    munmap(a, 4096);
    if (write(lone, "hello", 5) != 5) fail("write: %m");
    if (fcntl(lone, F_SETFL, O_APPEND)) fail("F_SETFL: %m");
    lseek(lone, 3, SEEK_SET);
    struct stat st1;
    fstat(lone, &st1);

    // fd and mapping of one object.
    char *m = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("mmap: %m");
    datagen(m, LEN, 7);
    int both = open_mapping(m, LEN, O_RDWR);
    check_link(lone, "fd without a mapping");
    check_link(both, "fd of a mapping");

    test_daemon();
    test_waitsig();

    check_link(lone, "fd without a mapping");
    check_link(both, "fd of a mapping");
    struct stat st2;
    fstat(lone, &st2);
    if (st2.st_size != 5) fail("fd without a mapping: size %ld, was 5", (long)st2.st_size);
    if ((fcntl(lone, F_GETFL) & O_APPEND) == 0) fail("fd without a mapping lost O_APPEND");
    if (lseek(lone, 0, SEEK_CUR) != 3) fail("fd without a mapping: offset %ld, was 3", (long)lseek(lone, 0, SEEK_CUR));
    if (st2.st_dev != st1.st_dev) fail("fd without a mapping is on device %lx, was %lx (the shmem mount)", (unsigned long)st2.st_dev, (unsigned long)st1.st_dev);
    char buf[8] = {0};
    if (pread(lone, buf, 5, 0) != 5 || memcmp(buf, "hello", 5)) fail("fd without a mapping holds \"%.5s\"", buf);

    if (datachk(m, LEN, 7) >= 0) fail("mapping contents changed");
    if (pwrite(both, "XYZ", 3, 100) != 3) fail("pwrite: %m");
    if (memcmp(m + 100, "XYZ", 3)) fail("a write through the fd does not show in the mapping: two objects");
    m[5000] = 'Q';
    if (pread(both, buf, 1, 5000) != 1 || buf[0] != 'Q') fail("a write to the mapping does not show through the fd: two objects");
    return test_report();
}
