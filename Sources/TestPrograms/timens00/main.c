// Runs in a time namespace of its own with large CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets
// (unshared before the daemon is forked, so the daemon, the tree's root, is born in it).
// Across C/R neither clock may go back or jump far forward, and the offsets stay.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define MONO_OFF (10LL * 86400)
#define BOOT_OFF (20LL * 86400)

static long long ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int read_offsets(long long *mono, long long *boot) {
    char b[256] = {0};
    int fd = open("/proc/self/timens_offsets", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, b, sizeof(b) - 1);
    close(fd);
    if (n <= 0) return -1;
    *mono = *boot = -1;
    for (char *l = strtok(b, "\n"); l; l = strtok(NULL, "\n")) {
        char name[32];
        long long s, x;
        if (sscanf(l, "%31s %lld %lld", name, &s, &x) != 3) continue;
        if (!strcmp(name, "monotonic") || !strcmp(name, "1")) *mono = s;
        if (!strcmp(name, "boottime") || !strcmp(name, "7")) *boot = s;
    }
    return 0;
}

int main(int argc, char **argv) {
    // Before test_init: its fork makes the daemon, which enters the new namespace.
    if (unshare(CLONE_NEWTIME) < 0) { perror("unshare(CLONE_NEWTIME)"); return 1; }
    int fd = open("/proc/self/timens_offsets", O_WRONLY);
    char o[128];
    int len = snprintf(o, sizeof(o), "monotonic %lld 0\nboottime %lld 0\n", MONO_OFF, BOOT_OFF);
    if (fd < 0 || write(fd, o, len) != len) { perror("timens_offsets"); return 1; }
    close(fd);
    test_init(argc, argv);
    long long m0 = ns(CLOCK_MONOTONIC), b0 = ns(CLOCK_BOOTTIME);
    if (m0 < MONO_OFF * 1000000000LL || b0 < BOOT_OFF * 1000000000LL)
        fail("not in the time namespace: monotonic %lld s, boottime %lld s", m0 / 1000000000, b0 / 1000000000);
    test_daemon();
    long long pm = m0, pb = b0, nm = m0, nb = b0;
    while (!test_stopped()) {
        struct timespec d = { 0, 50 * 1000 * 1000 };
        nanosleep(&d, NULL);
        nm = ns(CLOCK_MONOTONIC);
        nb = ns(CLOCK_BOOTTIME);
        if (nm < pm) fail("CLOCK_MONOTONIC went back by %lld ms", (pm - nm) / 1000000);
        if (nb < pb) fail("CLOCK_BOOTTIME went back by %lld ms", (pb - nb) / 1000000);
        // A restore that lost the namespace would go back by days; one that added its
        // offsets twice would go forward by days. Minutes are the most a C/R takes here.
        if (nm - pm > 600LL * 1000000000) fail("CLOCK_MONOTONIC jumped forward by %lld s", (nm - pm) / 1000000000);
        if (nb - pb > 600LL * 1000000000) fail("CLOCK_BOOTTIME jumped forward by %lld s", (nb - pb) / 1000000000);
        pm = nm;
        pb = nb;
    }
    long long mo, bo;
    if (read_offsets(&mo, &bo) < 0) fail("cannot read /proc/self/timens_offsets: %m");
    else if (mo != MONO_OFF || bo != BOOT_OFF) fail("offsets are now monotonic %lld s, boottime %lld s", mo, bo);
    test_msg("monotonic %lld s, boottime %lld s", nm / 1000000000, nb / 1000000000);
    return test_report();
}
