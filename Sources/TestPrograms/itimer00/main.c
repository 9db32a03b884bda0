// Interval timers (struct itimerval is {interval, value}) keep their remaining time (decreasing, not reset) and their intervals.
#include "zdtmtst.h"
#include <sys/time.h>
#include <time.h>

static double tv(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct itimerval v[3] = {
        { { 500, 0 }, { 1000, 0 } }, { { 300, 250000 }, { 700, 0 } }, { { 200, 0 }, { 900, 500000 } } };
    int which[3] = { ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF };
    const char *names[3] = { "REAL", "VIRTUAL", "PROF" };
    struct timespec t0, t1;
    for (int i = 0; i < 3; i++)
        if (setitimer(which[i], &v[i], NULL)) fail("setitimer %s: %m", names[i]);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    test_daemon();
    test_waitsig();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double elapsed = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    for (int i = 0; i < 3; i++) {
        struct itimerval now;
        getitimer(which[i], &now);
        if (tv(now.it_interval) != tv(v[i].it_interval))
            fail("ITIMER_%s interval %.6f, expected %.6f", names[i], tv(now.it_interval), tv(v[i].it_interval));
        double left = tv(now.it_value), start = tv(v[i].it_value);
        if (left <= 0 || left > start + 0.1) fail("ITIMER_%s remaining %.6f, set to %.6f", names[i], left, start);
        if (which[i] == ITIMER_REAL && (start - left < elapsed - 1.0 || start - left > elapsed + 1.0))
            fail("ITIMER_REAL ran %.3f s in %.3f s of wall time", start - left, elapsed);
    }
    return test_report();
}
