// memfds keep their names, contents (holes included), seals and per-description offsets,
// and two fds of one memfd still share its inode. A memfd holding a script can be exec'ed
// through its fd (execveat AT_EMPTY_PATH): memfd_create's own description is no writer, and
// a restore that reopened it would make the exec fail with ETXTBSY.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int exec_status(int fd) {
    pid_t c = fork();
    if (c == 0) {
        char *argv[] = { "true", NULL }, *envp[] = { NULL };
        syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
        _exit(errno);
    }
    int st = -1;
    waitpid(c, &st, 0);
    return st;
}

#define LEN (300 << 10)

int main(int argc, char **argv) {
    test_init(argc, argv);
    int m = memfd_create("memfd00-data", MFD_ALLOW_SEALING);
    int plain = memfd_create("memfd00-plain", 0);
    if (m < 0 || plain < 0) fail("memfd_create: %m");
    char *data = malloc(LEN), *back = malloc(LEN);
    datagen(data, LEN, 4242);
    memset(data + 64 * 1024, 0, 128 * 1024);  // a hole in the middle
    if (pwrite(m, data, LEN, 0) != LEN) fail("pwrite: %m");
    if (fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)) fail("F_ADD_SEALS: %m");
    lseek(m, 12345, SEEK_SET);
    if (write(plain, "0123456789", 10) != 10) fail("write plain: %m");
    lseek(plain, 5, SEEK_SET);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", m);
    int ro = open(path, O_RDONLY);
    lseek(ro, 1000, SEEK_SET);
    int script = memfd_create("script", 0);
    if (script < 0 || write(script, "#!/bin/true\n", 12) != 12) fail("script memfd: %m");
    if (exec_status(script) != 0) fail("exec of the script memfd before the dump: status %#x", exec_status(script));
    test_daemon();
    test_waitsig();
    int st = exec_status(script);
    if (st != 0) fail("exec of the script memfd after restore: status %#x (errno %d in the child)", st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    char link[128] = { 0 };
    readlink(path, link, sizeof(link) - 1);
    if (strcmp(link, "/memfd:memfd00-data (deleted)")) fail("memfd is now '%s'", link);
    struct stat a, b;
    fstat(m, &a);
    fstat(ro, &b);
    if (a.st_ino != b.st_ino) fail("the read-only fd is no longer the same memfd");
    if (a.st_size != LEN) fail("memfd size %ld, expected %d", (long)a.st_size, LEN);
    if (fcntl(m, F_GET_SEALS) != (F_SEAL_SHRINK | F_SEAL_GROW)) fail("seals %#x, expected SHRINK|GROW", fcntl(m, F_GET_SEALS));
    if (fcntl(plain, F_GET_SEALS) != F_SEAL_SEAL) fail("unsealable memfd has seals %#x, expected F_SEAL_SEAL", fcntl(plain, F_GET_SEALS));
    if (ftruncate(m, 10) != -1 || errno != EPERM) fail("a SHRINK-sealed memfd could be truncated");
    if (pread(m, back, LEN, 0) != LEN) fail("pread: %m");
    else datachk_fail("memfd contents", back, 64 * 1024, 4242);
    if (memcmp(back, data, LEN)) fail("memfd contents differ from what was written");
    if ((fcntl(ro, F_GETFL) & O_ACCMODE) != O_RDONLY) fail("read-only fd flags %#o", fcntl(ro, F_GETFL));
    if (lseek(ro, 0, SEEK_CUR) != 1000) fail("read-only fd offset %ld, expected 1000", (long)lseek(ro, 0, SEEK_CUR));
    if (lseek(m, 0, SEEK_CUR) != 12345) fail("memfd offset %ld, expected 12345", (long)lseek(m, 0, SEEK_CUR));
    char buf[8] = { 0 };
    if (read(plain, buf, 5) != 5 || memcmp(buf, "56789", 5)) fail("plain memfd at offset 5 reads '%s', expected '56789'", buf);
    return test_report();
}
