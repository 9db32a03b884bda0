// Soft rlimits, the umask and the working directory survive.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct { int res; const char *name; rlim_t soft; } lims[] = {
    { RLIMIT_NOFILE, "NOFILE", 500 }, { RLIMIT_STACK, "STACK", 4 << 20 },
    { RLIMIT_CORE, "CORE", 12345 * 4096 }, { RLIMIT_MSGQUEUE, "MSGQUEUE", 4000 },
};
#define N (int)(sizeof(lims) / sizeof(lims[0]))

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct rlimit before[N];
    for (int i = 0; i < N; i++) {
        struct rlimit r;
        getrlimit(lims[i].res, &r);
        r.rlim_cur = lims[i].soft < r.rlim_max ? lims[i].soft : r.rlim_max;
        if (setrlimit(lims[i].res, &r)) fail("setrlimit %s: %m", lims[i].name);
        before[i] = r;
    }
    umask(027);
    if (mkdir("rlimit00.dir", 0755) && errno != EEXIST) fail("mkdir: %m");
    if (chdir("rlimit00.dir")) fail("chdir: %m");
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd))) fail("getcwd: %m");
    test_daemon();
    test_waitsig();
    for (int i = 0; i < N; i++) {
        struct rlimit r;
        getrlimit(lims[i].res, &r);
        if (r.rlim_cur != before[i].rlim_cur || r.rlim_max != before[i].rlim_max)
            fail("RLIMIT_%s: %llu/%llu, expected %llu/%llu", lims[i].name, (unsigned long long)r.rlim_cur,
                 (unsigned long long)r.rlim_max, (unsigned long long)before[i].rlim_cur, (unsigned long long)before[i].rlim_max);
    }
    mode_t m = umask(0);
    if (m != 027) fail("umask %03o, expected 027", m);
    char now[PATH_MAX];
    if (!getcwd(now, sizeof(now)) || strcmp(now, cwd)) fail("cwd '%s', expected '%s'", now, cwd);
    return test_report();
}
