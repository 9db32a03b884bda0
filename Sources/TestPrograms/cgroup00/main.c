// Cgroup membership and limits come back. The workload makes cryo-test-cg00-PID-N under its
// own cgroup in each hierarchy with cpu, memory or pids (cgroup v1), and in the v2
// hierarchy (limits there only where its controllers are enabled), lists each directory in
// the case folder's `cgroups` file (zdtm removes them after the case, even a failed one),
// moves itself in and sets limits. After restore /proc/self/cgroup and every limit must be
// as before. Run with --manage-cgroups (the suite gives full).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char list_path[4096];
static char limits[64][256], values[64][128];
static int nlimits;

// Whether the comma-separated controller list names `c` exactly.
static int has(const char *ctrls, const char *c) {
    size_t n = strlen(c);
    for (const char *p = ctrls; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, c, n) && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

static int put(const char *dir, const char *name, const char *value, int required) {
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) { if (required) fail("open %s: %m", p); return -1; }
    ssize_t n = write(fd, value, strlen(value));
    close(fd);
    if (n < 0) { fail("write %s = %s: %m", p, value); return -1; }
    return 0;
}

static void get(const char *path, char *out, size_t n) {
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { snprintf(out, n, "(open: %s)", strerror(errno)); return; }
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    out[r > 0 ? r : 0] = 0;
}

static void limit(const char *dir, const char *name, const char *value, int required) {
    if (put(dir, name, value, required)) return;
    if (nlimits < 64) { snprintf(limits[nlimits], sizeof(limits[0]), "%s/%s", dir, name); nlimits++; }
}

static void make(const char *mount, const char *path, const char *ctrls) {
    // The pid alone repeats in new pid namespaces (every ns case's workload is pid 3 or so).
    static char tag[48];
    if (!tag[0]) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(tag, sizeof(tag), "%d-%ld", getpid(), (long)ts.tv_nsec);
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s%s/cryo-test-cg00-%s", mount, strcmp(path, "/") ? path : "", tag);
    FILE *l = fopen(list_path, "a");
    if (!l) { fail("%s: %m", list_path); return; }
    fprintf(l, "%s\n", dir);
    fclose(l);
    if (mkdir(dir, 0755)) { fail("mkdir %s: %m", dir); return; }
    int v2 = ctrls[0] == 0;
    if (v2) { limit(dir, "cpu.max", "20000 50000", 0); limit(dir, "cpu.weight", "50", 0); }
    else if (has(ctrls, "cpu")) {
        limit(dir, "cpu.cfs_period_us", "50000", 1); limit(dir, "cpu.cfs_quota_us", "20000", 1); limit(dir, "cpu.shares", "512", 1);
    }
    if (v2) { limit(dir, "memory.max", "268435456", 0); limit(dir, "memory.high", "201326592", 0); }
    else if (has(ctrls, "memory")) {
        limit(dir, "memory.limit_in_bytes", "268435456", 1); limit(dir, "memory.soft_limit_in_bytes", "134217728", 1);
        limit(dir, "memory.swappiness", "30", 1);
    }
    if (v2 || has(ctrls, "pids")) limit(dir, "pids.max", "64", !v2);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", getpid());
    put(dir, "cgroup.procs", pid, 1);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--outfile=", 10)) {
            snprintf(list_path, sizeof(list_path), "%s", argv[i] + 10);
            char *slash = strrchr(list_path, '/');
            if (slash) strcpy(slash + 1, "cgroups");
        }
    test_init(argc, argv);
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[4096];
    int made = 0;
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = 0;
        const char *ctrls = a + 1, *path = b + 1;
        char mount[4096];
        if (!ctrls[0]) {
            snprintf(mount, sizeof(mount), access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified");
        } else {
            if (!has(ctrls, "cpu") && !has(ctrls, "memory") && !has(ctrls, "pids")) continue;
            snprintf(mount, sizeof(mount), "/sys/fs/cgroup/%s", ctrls);
        }
        char probe[4200];
        snprintf(probe, sizeof(probe), "%s/cgroup.procs", mount);
        if (access(probe, W_OK)) continue;
        make(mount, path, ctrls);
        made++;
    }
    if (f) fclose(f);
    if (!made) fail("no cgroup hierarchy to make a test cgroup in");
    char before[8192], after[8192];
    get("/proc/self/cgroup", before, sizeof(before));
    for (int i = 0; i < nlimits; i++) get(limits[i], values[i], sizeof(values[0]));
    test_msg("cgroups:\n%s%d limits", before, nlimits);
    test_daemon();
    test_waitsig();

    get("/proc/self/cgroup", after, sizeof(after));
    if (strcmp(before, after)) fail("cgroups before:\n%safter:\n%s", before, after);
    for (int i = 0; i < nlimits; i++) {
        char now[128];
        get(limits[i], now, sizeof(now));
        if (strcmp(now, values[i])) fail("%s: %s, expected %s", limits[i], now, values[i]);
    }
    return test_report();
}
