// Process attributes that were dumped but not restored come back: oom_score_adj, loginuid,
// PR_SET_THP_DISABLE, and a memfd's owner and permission bits.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    int ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok ? 0 : -1;
}

static long read_long(const char *path) {
    char buf[64] = { 0 };
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -999;
    if (read(fd, buf, sizeof(buf) - 1) < 0) buf[0] = 0;
    close(fd);
    return strtol(buf, NULL, 10);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (write_file("/proc/self/oom_score_adj", "417")) fail("oom_score_adj: %m");
    if (write_file("/proc/self/loginuid", "3")) fail("loginuid: %m");
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) fail("PR_SET_THP_DISABLE: %m");
    int m = memfd_create("procattr00", 0);
    if (m < 0 || fchmod(m, 0642) || fchown(m, 1234, 5678) || write(m, "x", 1) != 1) fail("memfd: %m");
    long oom = read_long("/proc/self/oom_score_adj"), luid = read_long("/proc/self/loginuid");
    if (oom != 417 || luid != 3) fail("set-up: oom_score_adj %ld loginuid %ld", oom, luid);
    test_daemon();
    test_waitsig();
    if ((oom = read_long("/proc/self/oom_score_adj")) != 417) fail("oom_score_adj %ld, was 417", oom);
    if ((luid = read_long("/proc/self/loginuid")) != 3) fail("loginuid %ld, was 3", luid);
    int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
    if (thp != 1) fail("PR_GET_THP_DISABLE %d, was 1", thp);
    struct stat st;
    if (fstat(m, &st)) fail("fstat memfd: %m");
    else if ((st.st_mode & 07777) != 0642 || st.st_uid != 1234 || st.st_gid != 5678)
        fail("memfd mode 0%o owner %d:%d, was 0642 1234:5678", st.st_mode & 07777, st.st_uid, st.st_gid);
    return test_report();
}
