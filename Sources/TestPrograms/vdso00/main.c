// The vDSO keeps working and stays where libc found it: clock_gettime/gettimeofday/time go
// forward and agree with the raw syscalls, and [vdso] is still at AT_SYSINFO_EHDR.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static unsigned long vdso_start(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long s = 0, e;
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &s, &e) == 2) break;
    if (f) fclose(f);
    return s;
}

static void check(const char *when) {
    static const struct { clockid_t id; const char *name; } clocks[] = {
        { CLOCK_MONOTONIC, "MONOTONIC" }, { CLOCK_REALTIME, "REALTIME" }, { CLOCK_BOOTTIME, "BOOTTIME" },
        { CLOCK_MONOTONIC_RAW, "MONOTONIC_RAW" } };
    for (int i = 0; i < 4; i++) {
        struct timespec a, s, b;
        // vDSO, syscall, vDSO: the syscall must land between the two, give or take 50 ms.
        clock_gettime(clocks[i].id, &a);
        syscall(SYS_clock_gettime, clocks[i].id, &s);
        clock_gettime(clocks[i].id, &b);
        if (ns(b) < ns(a)) fail("%s: CLOCK_%s went back in the vDSO: %lld -> %lld ns", when, clocks[i].name, ns(a), ns(b));
        if (ns(s) < ns(a) - 50000000 || ns(s) > ns(b) + 50000000)
            fail("%s: CLOCK_%s: vDSO %lld..%lld ns, syscall %lld ns", when, clocks[i].name, ns(a), ns(b), ns(s));
    }
    struct timeval tv, stv;
    gettimeofday(&tv, NULL);
    syscall(SYS_gettimeofday, &stv, NULL);
    time_t t = time(NULL), st = syscall(SYS_time, NULL);
    long long d = (stv.tv_sec - tv.tv_sec) * 1000000LL + (stv.tv_usec - tv.tv_usec);
    if (d < 0 || d > 50000) fail("%s: gettimeofday vDSO %ld.%06ld vs syscall %ld.%06ld", when, (long)tv.tv_sec,
                                 (long)tv.tv_usec, (long)stv.tv_sec, (long)stv.tv_usec);
    // time() reads the seconds the timekeeper stored at its last tick, which may still be the
    // previous second while gettimeofday reads the clock: it may lag by one, never lead by more.
    if (t < tv.tv_sec - 1 || t > tv.tv_sec + 1 || st < t || st > t + 1)
        fail("%s: time() %ld, syscall time %ld, gettimeofday %ld", when, (long)t, (long)st, (long)tv.tv_sec);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    unsigned long ehdr = getauxval(AT_SYSINFO_EHDR), v0 = vdso_start();
    if (!ehdr || v0 != ehdr) fail("[vdso] at %#lx, AT_SYSINFO_EHDR %#lx", v0, ehdr);
    check("before");
    struct timespec m0, r0, m1, r1;
    clock_gettime(CLOCK_MONOTONIC, &m0);
    clock_gettime(CLOCK_REALTIME, &r0);
    test_daemon();
    test_waitsig();
    check("after");
    clock_gettime(CLOCK_MONOTONIC, &m1);
    clock_gettime(CLOCK_REALTIME, &r1);
    if (ns(m1) <= ns(m0)) fail("CLOCK_MONOTONIC did not advance: %lld -> %lld ns", ns(m0), ns(m1));
    if (ns(r1) <= ns(r0)) fail("CLOCK_REALTIME did not advance: %lld -> %lld ns", ns(r0), ns(r1));
    unsigned long v1 = vdso_start();
    if (v1 != v0) fail("[vdso] moved from %#lx to %#lx (AT_SYSINFO_EHDR says %#lx)", v0, v1, ehdr);
    return test_report();
}
