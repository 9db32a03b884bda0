// O_TMPFILE files (what glibc's tmpfile() makes): never linked, named DIR/#INODE. After restore
// each is still one: contents, offset, O_APPEND and O_TMPFILE in its flags, a second
// description of it (reopened through /proc) with its own offset, and linkat(AT_EMPTY_PATH)
// still gives it a name, as only a file made with O_TMPFILE allows.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd))) fail("getcwd: %m");
    int t = open(cwd, O_TMPFILE | O_RDWR, 0640);
    if (t < 0) fail("O_TMPFILE in %s: %m", cwd);
    char data[3 * 4096];
    datagen(data, sizeof(data), 5);
    if (write(t, data, sizeof(data)) != (ssize_t)sizeof(data)) fail("write: %m");
    lseek(t, 100, SEEK_SET);
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", t);
    int again = open(p, O_RDONLY);
    if (again < 0) fail("reopen: %m");
    lseek(again, 200, SEEK_SET);
    FILE *std = tmpfile();
    if (!std || fputs("tmpfile()", std) < 0 || fflush(std)) fail("tmpfile: %m");
    int a = fileno(std);
    if (fcntl(a, F_SETFL, O_APPEND)) fail("F_SETFL: %m");
    int tflags = fcntl(t, F_GETFL), aflags = fcntl(a, F_GETFL);
    if (!(tflags & O_TMPFILE & ~O_DIRECTORY)) fail("O_TMPFILE is not in the flags before the dump (0%o)", tflags);

    test_daemon();
    test_waitsig();

    if (fcntl(t, F_GETFL) != tflags) fail("O_TMPFILE fd: flags 0%o, were 0%o", fcntl(t, F_GETFL), tflags);
    if (fcntl(a, F_GETFL) != aflags) fail("tmpfile() fd: flags 0%o, were 0%o", fcntl(a, F_GETFL), aflags);
    if (lseek(t, 0, SEEK_CUR) != 100 || lseek(again, 0, SEEK_CUR) != 200) fail("offsets %ld and %ld, were 100 and 200", (long)lseek(t, 0, SEEK_CUR), (long)lseek(again, 0, SEEK_CUR));
    char got[sizeof(data)];
    if (pread(t, got, sizeof(got), 0) != (ssize_t)sizeof(got) || memcmp(got, data, sizeof(got))) fail("O_TMPFILE contents differ");
    struct stat s1, s2;
    fstat(t, &s1); fstat(again, &s2);
    if (s1.st_ino != s2.st_ino || s1.st_nlink != 0 || (s1.st_mode & 07777) != 0640) fail("O_TMPFILE: inodes %lu/%lu, nlink %lu, mode 0%o", (unsigned long)s1.st_ino, (unsigned long)s2.st_ino, (unsigned long)s1.st_nlink, s1.st_mode & 07777);
    if (pwrite(t, "Z", 1, 0) != 1 || pread(again, got, 1, 0) != 1 || got[0] != 'Z') fail("the two descriptions are not one file");
    if (write(a, "+", 1) != 1 || pread(a, got, 10, 0) != 10 || memcmp(got, "tmpfile()+", 10)) fail("tmpfile() contents or O_APPEND lost");
    char name[4200];
    snprintf(name, sizeof(name), "%s/tmpfile00.linked", cwd);
    unlink(name);
    if (linkat(t, "", AT_FDCWD, name, AT_EMPTY_PATH)) fail("linkat(AT_EMPTY_PATH) of the O_TMPFILE file: %m");
    unlink(name);
    return test_report();
}
