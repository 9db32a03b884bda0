// The vDSO keeps working: clock_gettime/gettimeofday/time go forward and agree with the raw syscall.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double ts(struct timespec t) { return t.tv_sec + t.tv_nsec / 1e9; }

static void check(const char *when) {
    clockid_t clocks[] = { CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME };
    for (int i = 0; i < 3; i++) {
        struct timespec v, s;
        clock_gettime(clocks[i], &v);
        syscall(SYS_clock_gettime, clocks[i], &s);
        if (ts(s) - ts(v) < 0 || ts(s) - ts(v) > 0.5)
            fail("%s: clock %d: vDSO %.6f vs syscall %.6f", when, clocks[i], ts(v), ts(s));
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    time_t t = time(NULL);
    if (t < tv.tv_sec - 1 || t > tv.tv_sec + 1) fail("%s: time() %ld vs gettimeofday %ld", when, (long)t, (long)tv.tv_sec);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct timespec m0, m1;
    check("before");
    clock_gettime(CLOCK_MONOTONIC, &m0);
    test_daemon();
    test_waitsig();
    check("after");
    clock_gettime(CLOCK_MONOTONIC, &m1);
    if (ts(m1) < ts(m0)) fail("monotonic went back: %.6f -> %.6f", ts(m0), ts(m1));
    return test_report();
}
