// Open regular files keep their offsets, status flags, close-on-exec flag and contents.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    const char *text = "0123456789abcdefghijklmnopqrstuvwxyz";
    int a = open("file00.append", O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0644);
    int r = open("file00.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (a < 0 || r < 0) fail("open: %m");
    if (write(r, text, strlen(text)) != (ssize_t)strlen(text)) fail("write: %m");
    close(r);
    r = open("file00.data", O_RDONLY);
    int c = open("file00.data", O_RDONLY | O_CLOEXEC);
    char buf[16];
    if (read(r, buf, 10) != 10) fail("read: %m");
    lseek(c, 20, SEEK_SET);
    if (write(a, "first;", 6) != 6) fail("append: %m");
    int af = fcntl(a, F_GETFL), rf = fcntl(r, F_GETFL), cd = fcntl(c, F_GETFD);
    if (!(af & O_APPEND) || (af & O_ACCMODE) != O_RDWR) fail("append fd flags %#o lack O_RDWR|O_APPEND", af);
    struct stat sa, sr, sc;
    fstat(a, &sa); fstat(r, &sr); fstat(c, &sc);
    test_daemon();
    test_waitsig();
    struct stat na, nr, nc;
    fstat(a, &na); fstat(r, &nr); fstat(c, &nc);
    if (na.st_ino != sa.st_ino || na.st_dev != sa.st_dev) fail("append fd now refers to inode %lu, expected %lu", (unsigned long)na.st_ino, (unsigned long)sa.st_ino);
    if (nr.st_ino != sr.st_ino || nc.st_ino != sc.st_ino) fail("read fds now refer to inodes %lu/%lu, expected %lu", (unsigned long)nr.st_ino, (unsigned long)nc.st_ino, (unsigned long)sr.st_ino);
    if (lseek(r, 0, SEEK_CUR) != 10) fail("read fd offset %ld, expected 10", (long)lseek(r, 0, SEEK_CUR));
    if (lseek(c, 0, SEEK_CUR) != 20) fail("cloexec fd offset %ld, expected 20", (long)lseek(c, 0, SEEK_CUR));
    if (fcntl(a, F_GETFL) != af) fail("append fd flags %#o, expected %#o", fcntl(a, F_GETFL), af);
    if (fcntl(r, F_GETFL) != rf) fail("read fd flags %#o, expected %#o", fcntl(r, F_GETFL), rf);
    if (fcntl(c, F_GETFD) != cd || !(cd & FD_CLOEXEC)) fail("cloexec fd lost FD_CLOEXEC");
    if (fcntl(r, F_GETFD) & FD_CLOEXEC) fail("read fd gained FD_CLOEXEC");
    if (read(r, buf, 5) != 5 || memcmp(buf, "abcde", 5)) fail("read at offset 10: expected 'abcde', got '%.5s'", buf);
    if (read(c, buf, 5) != 5 || memcmp(buf, "klmno", 5)) fail("read at offset 20: expected 'klmno', got '%.5s'", buf);
    char whole[64] = { 0 };
    if (pread(c, whole, sizeof(whole) - 1, 0) != (ssize_t)strlen(text) || strcmp(whole, text))
        fail("file00.data holds '%s', expected '%s'", whole, text);
    lseek(a, 0, SEEK_SET);
    if (write(a, "second", 6) != 6) fail("append after restore: %m");
    char all[32] = { 0 };
    if (pread(a, all, sizeof(all) - 1, 0) != 12 || strcmp(all, "first;second")) fail("append file holds '%s'", all);
    return test_report();
}
