// Pipes keep their data in flight exactly, their status flags, their size, the sharing of
// one description between dups (one at a high fd number, past the usual 1024 limit), and EOF
// for a pipe whose write end was closed.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    const char *msg = "data in flight through pipe00";
    int a[2], b[2];
    if (pipe(a) || pipe(b)) fail("pipe: %m");
    if (fcntl(a[0], F_SETFL, O_NONBLOCK)) fail("F_SETFL: %m");
    if (fcntl(a[1], F_SETPIPE_SZ, 128 << 10) < 0) fail("F_SETPIPE_SZ: %m");
    int size = fcntl(a[1], F_GETPIPE_SZ);
    if (write(a[1], msg, strlen(msg)) != (ssize_t)strlen(msg)) fail("write: %m");
    int dup_r = dup(a[0]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) { rl.rlim_cur = 4096; setrlimit(RLIMIT_NOFILE, &rl); }
    int high = dup2(a[1], 3000);
    // A second description of the read end, blocking where the first is not.
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", a[0]);
    int r2 = open(self, O_RDONLY);
    if (r2 < 0) fail("reopen the read end: %m");
    if (high != 3000) fail("dup2 to 3000: %m");
    // b: data then EOF, the write end gone.
    if (write(b[1], "tail", 4) != 4) fail("write b: %m");
    close(b[1]);
    test_daemon();
    test_waitsig();

    if (!(fcntl(a[0], F_GETFL) & O_NONBLOCK)) fail("read end lost O_NONBLOCK");
    if (fcntl(a[1], F_GETFL) & O_NONBLOCK) fail("write end gained O_NONBLOCK");
    struct stat sh, sw;
    if (fstat(high, &sh) || fstat(a[1], &sw) || sh.st_ino != sw.st_ino) fail("fd 3000 is no longer the write end of pipe a");
    if (fcntl(a[1], F_GETPIPE_SZ) != size) fail("pipe size %d, expected %d", fcntl(a[1], F_GETPIPE_SZ), size);
    // One description: a flag set through the dup shows through the original.
    fcntl(dup_r, F_SETFL, 0);
    if (fcntl(a[0], F_GETFL) & O_NONBLOCK) fail("dup of the read end is no longer the same open file description");
    fcntl(dup_r, F_SETFL, O_NONBLOCK);
    char buf[256] = { 0 };
    ssize_t n = read(a[0], buf, sizeof(buf));
    if (n != (ssize_t)strlen(msg) || memcmp(buf, msg, n)) fail("pipe a holds %zd bytes '%.*s', expected '%s'", n, (int)(n > 0 ? n : 0), buf, msg);
    n = read(a[0], buf, sizeof(buf));
    if (n != -1 || errno != EAGAIN) fail("pipe a: read after the data gave %zd (%m), expected EAGAIN", n);
    if (write(a[1], "x", 1) != 1 || read(dup_r, buf, 1) != 1 || buf[0] != 'x') fail("pipe a does not carry new data from write end to read end");
    struct stat s2, s0;
    if (fstat(r2, &s2) || fstat(a[0], &s0) || s2.st_ino != s0.st_ino) fail("the reopened read end is on another pipe");
    if (fcntl(r2, F_GETFL) & O_NONBLOCK) fail("the reopened read end took O_NONBLOCK from the first description");
    if (write(a[1], "y", 1) != 1 || read(r2, buf, 1) != 1 || buf[0] != 'y') fail("the reopened read end does not read pipe a");
    memset(buf, 0, sizeof(buf));
    n = read(b[0], buf, sizeof(buf));
    if (n != 4 || memcmp(buf, "tail", 4)) fail("pipe b holds %zd bytes '%.*s', expected 'tail'", n, (int)(n > 0 ? n : 0), buf);
    n = read(b[0], buf, sizeof(buf));
    if (n != 0) fail("pipe b: %zd after its data, expected EOF (its write end was closed)", n);
    return test_report();
}
