// fds of the process's own namespaces (/proc/self/ns/KIND, as setns users keep them) name the
// same namespaces after restore: each fd's inode is that of the namespace the process is in,
// on the host and in a tree with namespaces of its own.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kinds[] = { "net", "uts", "ipc", "pid", "mnt", "cgroup", "user", "time" };
#define NK (int)(sizeof(kinds) / sizeof(kinds[0]))

int main(int argc, char **argv) {
    test_init(argc, argv);
    int fds[NK];
    char path[64];
    for (int i = 0; i < NK; i++) {
        snprintf(path, sizeof(path), "/proc/self/ns/%s", kinds[i]);
        fds[i] = open(path, O_RDONLY | (i % 2 ? O_CLOEXEC : 0));
        if (fds[i] < 0) fail("open %s: %m", path);
    }
    test_daemon();
    test_waitsig();
    for (int i = 0; i < NK; i++) {
        struct stat a, b;
        snprintf(path, sizeof(path), "/proc/self/ns/%s", kinds[i]);
        if (fstat(fds[i], &a) || stat(path, &b)) { fail("stat %s: %m", path); continue; }
        if (a.st_ino != b.st_ino || a.st_dev != b.st_dev) fail("the fd of %s names namespace %lu, the process is in %lu", kinds[i], (unsigned long)a.st_ino, (unsigned long)b.st_ino);
        int cloexec = fcntl(fds[i], F_GETFD) & FD_CLOEXEC;
        if (cloexec != (i % 2 ? FD_CLOEXEC : 0)) fail("the fd of %s has close-on-exec %d", kinds[i], cloexec);
    }
    return test_report();
}
