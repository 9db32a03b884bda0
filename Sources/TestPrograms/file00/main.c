// Open regular files keep their offsets, status flags, close-on-exec flag and contents.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <string.h>
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
    test_daemon();
    test_waitsig();
    if (lseek(r, 0, SEEK_CUR) != 10) fail("read fd offset %ld, expected 10", (long)lseek(r, 0, SEEK_CUR));
    if (lseek(c, 0, SEEK_CUR) != 20) fail("cloexec fd offset %ld, expected 20", (long)lseek(c, 0, SEEK_CUR));
    if (fcntl(a, F_GETFL) != af) fail("append fd flags %#o, expected %#o", fcntl(a, F_GETFL), af);
    if (fcntl(r, F_GETFL) != rf) fail("read fd flags %#o, expected %#o", fcntl(r, F_GETFL), rf);
    if (fcntl(c, F_GETFD) != cd || !(cd & FD_CLOEXEC)) fail("cloexec fd lost FD_CLOEXEC");
    if (fcntl(r, F_GETFD) & FD_CLOEXEC) fail("read fd gained FD_CLOEXEC");
    if (read(r, buf, 5) != 5 || memcmp(buf, "abcde", 5)) fail("read after restore: wrong data");
    lseek(a, 0, SEEK_SET);
    if (write(a, "second", 6) != 6) fail("append after restore: %m");
    char all[32] = { 0 };
    if (pread(a, all, sizeof(all) - 1, 0) != 12 || strcmp(all, "first;second")) fail("append file holds '%s'", all);
    return test_report();
}
