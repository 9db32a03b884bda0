// A cgroup namespace of the tree's own comes back rooted where it was. The workload makes
// cryo-test-cgns00-TAG under its cgroup in each writable hierarchy (and cryo-test-in below
// it), listing them in the case folder's `cgroups` file (zdtm removes them), moves itself
// to the outer one, unshares CLONE_NEWCGROUP there, then moves to the inner one and forks a
// child. Inside, /proc/self/cgroup shows /cryo-test-in where it made cgroups and / where it
// did not. After restore the parent's and child's views must be the same, they must share
// one cgroup namespace, and pid 1's cgroups (outside the namespace) must be seen relative to
// the same root ("/.." as many times as the root is deep). Run with --manage-cgroups.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

static char list_path[4096];
static char outer[16][4096];
static int nmade;

static void get(const char *path, char *out, size_t n) {
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { snprintf(out, n, "(open %s: %s)", path, strerror(errno)); return; }
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    out[r > 0 ? r : 0] = 0;
}

static int join(const char *dir) {
    char p[4200], pid[32];
    snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
    snprintf(pid, sizeof(pid), "%d", getpid());
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) { fail("open %s: %m", p); return -1; }
    ssize_t n = write(fd, pid, strlen(pid));
    close(fd);
    if (n < 0) { fail("join %s: %m", dir); return -1; }
    return 0;
}

static void list(const char *dir) {
    FILE *l = fopen(list_path, "a");
    if (!l) { fail("%s: %m", list_path); return; }
    fprintf(l, "%s\n", dir);
    fclose(l);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--outfile=", 10)) {
            snprintf(list_path, sizeof(list_path), "%s", argv[i] + 10);
            char *slash = strrchr(list_path, '/');
            if (slash) strcpy(slash + 1, "cgroups");
        }
    test_init(argc, argv);
    char tag[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(tag, sizeof(tag), "%d-%ld", getpid(), (long)ts.tv_nsec);

    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[4096];
    while (f && fgets(line, sizeof(line), f) && nmade < 16) {
        line[strcspn(line, "\n")] = 0;
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = 0;
        const char *ctrls = a + 1, *path = b + 1;
        char mount[4096];
        if (!ctrls[0]) snprintf(mount, sizeof(mount), access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified");
        else if (!strcmp(ctrls, "pids") || !strcmp(ctrls, "cpu") || !strcmp(ctrls, "name=systemd")) {
            snprintf(mount, sizeof(mount), "/sys/fs/cgroup/%s", strncmp(ctrls, "name=", 5) ? ctrls : ctrls + 5);
        } else continue;
        char probe[4200];
        snprintf(probe, sizeof(probe), "%s/cgroup.procs", mount);
        if (access(probe, W_OK)) continue;
        char *dir = outer[nmade];
        snprintf(dir, sizeof(outer[0]), "%s%s/cryo-test-cgns00-%s", mount, strcmp(path, "/") ? path : "", tag);
        char inner[4200];
        snprintf(inner, sizeof(inner), "%s/cryo-test-in", dir);
        list(dir);
        list(inner);
        if (mkdir(dir, 0755) || mkdir(inner, 0755)) { fail("mkdir %s: %m", inner); break; }
        if (join(dir)) break;
        nmade++;
    }
    if (f) fclose(f);
    if (!nmade) fail("no cgroup hierarchy to make a test cgroup in");
    if (unshare(CLONE_NEWCGROUP)) fail("unshare(CLONE_NEWCGROUP): %m");
    for (int i = 0; i < nmade; i++) {
        char inner[4200];
        snprintf(inner, sizeof(inner), "%s/cryo-test-in", outer[i]);
        join(inner);
    }
    char before[8192], init_before[8192];
    get("/proc/self/cgroup", before, sizeof(before));
    get("/proc/1/cgroup", init_before, sizeof(init_before));
    if (!strstr(before, ":/cryo-test-in\n")) fail("inside, /proc/self/cgroup does not show /cryo-test-in:\n%s", before);
    test_msg("cgroups inside:\n%spid 1 seen as:\n%s", before, init_before);

    int sync[2];
    if (pipe(sync)) fail("pipe: %m");
    pid_t child = test_fork();
    if (child == 0) {
        close(sync[1]);
        char c;
        // The parent writes nothing: the read ends when it closes its end (at its check).
        while (read(sync[0], &c, 1) < 0 && errno == EINTR) {}
        char mine[8192], nsc[128] = {0}, nsp[128] = {0}, pp[64];
        get("/proc/self/cgroup", mine, sizeof(mine));
        snprintf(pp, sizeof(pp), "/proc/%d/ns/cgroup", getppid());
        if (readlink("/proc/self/ns/cgroup", nsc, sizeof(nsc) - 1) < 0 || readlink(pp, nsp, sizeof(nsp) - 1) < 0) _exit(3);
        _exit(strcmp(mine, before) ? 1 : strcmp(nsc, nsp) ? 2 : 0);
    }
    close(sync[0]);
    test_daemon();
    test_waitsig();

    char after[8192], init_after[8192];
    get("/proc/self/cgroup", after, sizeof(after));
    get("/proc/1/cgroup", init_after, sizeof(init_after));
    if (strcmp(before, after)) fail("cgroups inside before:\n%safter:\n%s", before, after);
    if (strcmp(init_before, init_after)) fail("pid 1's cgroups seen from inside before:\n%safter (another namespace root):\n%s", init_before, init_after);
    close(sync[1]);
    int st = 0;
    if (waitpid(child, &st, 0) != child) fail("waitpid: %m");
    else if (!WIFEXITED(st) || WEXITSTATUS(st))
        fail("child: %s", WIFEXITED(st) && WEXITSTATUS(st) == 1 ? "its cgroups differ from its parent's" :
                          WIFEXITED(st) && WEXITSTATUS(st) == 2 ? "in another cgroup namespace than its parent" : "died");
    return test_report();
}
