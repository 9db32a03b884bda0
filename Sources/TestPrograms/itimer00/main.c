// Interval timers keep their intervals and their remaining time: not reset, never larger than
// set, and ITIMER_REAL decreased by about the time the process was alive. A checkpoint freezes
// it for a while, so the wait loop naps briefly and counts only the time between 50 ms naps (under 75 ms) as
// "live"; ITIMER_REAL must have run at least that long and at most the whole elapsed time.
#include "zdtmtst.h"
#include <sys/time.h>
#include <time.h>

static double tv(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    // struct itimerval is { interval, value }.
    struct itimerval v[3] = {
        { { 500, 0 }, { 1000, 0 } }, { { 300, 250000 }, { 700, 0 } }, { { 200, 0 }, { 900, 500000 } } };
    int which[3] = { ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF };
    const char *names[3] = { "REAL", "VIRTUAL", "PROF" };
    struct itimerval set[3];   // as the kernel took them (CPU timers round up to a tick)
    for (int i = 0; i < 3; i++)
        if (setitimer(which[i], &v[i], NULL) || getitimer(which[i], &set[i])) fail("setitimer %s: %m", names[i]);
    double t0 = now(), prev = t0, live = 0;
    test_daemon();
    while (!test_stopped()) {
        struct timespec nap = { 0, 50 * 1000 * 1000 };
        nanosleep(&nap, NULL);
        double t = now();
        if (t - prev < 0.075) live += t - prev;  // longer than a nap: frozen or checkpointed (the timer does not run while the task is gone); not counted
        prev = t;
    }
    double elapsed = now() - t0;
    for (int i = 0; i < 3; i++) {
        struct itimerval cur;
        if (getitimer(which[i], &cur)) { fail("getitimer %s: %m", names[i]); continue; }
        if (cur.it_interval.tv_sec != set[i].it_interval.tv_sec || cur.it_interval.tv_usec != set[i].it_interval.tv_usec)
            fail("ITIMER_%s interval %.6f s, expected %.6f s", names[i], tv(cur.it_interval), tv(set[i].it_interval));
        double left = tv(cur.it_value), start = tv(set[i].it_value), ran = start - left;
        if (left <= 0) fail("ITIMER_%s disarmed or expired: %.6f s left of %.6f s", names[i], left, start);
        // Re-arming a CPU timer (as every restore must) rounds it up by up to a tick (4 ms at HZ=250)
        // again; allow a dozen C/R cycles of that.
        else if (left > start + (which[i] == ITIMER_REAL ? 0 : 0.050)) fail("ITIMER_%s has %.6f s left, more than the %.6f s it was set to", names[i], left, start);
        else if (ran > elapsed + 0.1) fail("ITIMER_%s ran %.3f s in %.3f s of wall time", names[i], ran, elapsed);
        else if (which[i] == ITIMER_REAL && ran < live - 0.2)
            fail("ITIMER_REAL ran only %.3f s (left %.6f of %.6f) but the process was alive %.3f s: reset?", ran, left, start, live);
    }
    test_msg("elapsed %.3f s, live %.3f s", elapsed, live);
    return test_report();
}
