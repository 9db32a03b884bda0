// A file deleted while open and mapped: the fd keeps its offset and the file its bytes, a
// private mapping of it keeps both the file's pages and the ones written into the mapping,
// and the inode is still unlinked (nlink 0, "(deleted)" in /proc) after restore.
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

#define SIZE (3 * 1024 * 1024 + 123)  // not page-aligned: the tail must come back exactly
#define MAPLEN (1024 * 1024)

static int linkname(int fd, char *out, size_t len) {
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, out, len - 1);
    if (n < 0) return -1;
    out[n] = 0;
    return 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    char *data = malloc(SIZE);
    datagen(data, SIZE, 77);
    int fd = open("deleted00.data", O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (fd < 0) fail("open: %m");
    if (write(fd, data, SIZE) != SIZE) fail("write: %m");
    if (lseek(fd, 4242, SEEK_SET) != 4242) fail("lseek: %m");
    char *map = mmap(NULL, MAPLEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) fail("mmap: %m");
    memset(map + 8192, 0x5a, 4096);  // a private copy of one page
    char before[PATH_MAX];
    if (linkname(fd, before, sizeof(before))) fail("readlink: %m");
    if (unlink("deleted00.data")) fail("unlink: %m");
    strcat(before, " (deleted)");
    struct stat sb;
    fstat(fd, &sb);
    test_daemon();
    test_waitsig();

    struct stat sa;
    if (fstat(fd, &sa)) fail("fstat after restore: %m");
    if (sa.st_nlink != 0) fail("the file has %lu links after restore, expected 0 (still deleted)", (unsigned long)sa.st_nlink);
    if (sa.st_size != SIZE) fail("size %ld, expected %d", (long)sa.st_size, SIZE);
    if ((sa.st_mode & 07777) != (sb.st_mode & 07777)) fail("mode %o, expected %o", sa.st_mode & 07777, sb.st_mode & 07777);
    char after[PATH_MAX];
    if (linkname(fd, after, sizeof(after))) fail("readlink after restore: %m");
    if (strcmp(before, after)) fail("fd link reads '%s', expected '%s'", after, before);
    if (lseek(fd, 0, SEEK_CUR) != 4242) fail("offset %ld, expected 4242", (long)lseek(fd, 0, SEEK_CUR));
    char *back = malloc(SIZE);
    if (pread(fd, back, SIZE, 0) != SIZE) fail("pread: %m");
    datachk_fail("deleted file contents", back, SIZE, 77);
    for (int i = 0; i < 4096; i++)
        if (map[8192 + i] != 0x5a) { fail("written page of the private mapping lost at +%d", 8192 + i); break; }
    if (memcmp(map, data, 8192) || memcmp(map + 12288, data + 12288, MAPLEN - 12288))
        fail("file pages of the private mapping differ from the file");
    return test_report();
}
