// timerfds keep clock, interval and next expiry: a relative one-shot is neither reset nor
// lost, a disarmed one stays disarmed, and an absolute periodic timer on CLOCK_REALTIME
// counts every period since its start, including the ones while the process was not running.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <stdint.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static double ts(struct timespec t) { return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    int rel = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), off = timerfd_create(CLOCK_BOOTTIME, 0);
    int abs = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    if (rel < 0 || off < 0 || abs < 0) fail("timerfd_create: %m");
    struct itimerspec r = { .it_value = { 1000, 0 } };
    if (timerfd_settime(rel, 0, &r, NULL)) fail("settime rel: %m");
    struct timespec start;
    clock_gettime(CLOCK_REALTIME, &start);
    // First expiry 50 ms from now, then every 10 ms: it has fired, unread, by the dump.
    // Short periods make a lost downtime (a restore that treats the deadline as relative) show
    // as many missing periods.
    start.tv_nsec += 50000000;
    if (start.tv_nsec >= 1000000000) { start.tv_sec++; start.tv_nsec -= 1000000000; }
    struct itimerspec a = { .it_value = start, .it_interval = { 0, 10000000 } };
    if (timerfd_settime(abs, TFD_TIMER_ABSTIME, &a, NULL)) fail("settime abs: %m");
    test_daemon();
    test_waitsig();
    struct itimerspec cur;
    timerfd_gettime(rel, &cur);
    if (cur.it_interval.tv_sec || cur.it_interval.tv_nsec) fail("relative timer gained an interval");
    if (ts(cur.it_value) > 1000 || ts(cur.it_value) < 900) fail("relative timer has %.3f s left, expected a little under 1000", ts(cur.it_value));
    timerfd_gettime(off, &cur);
    if (cur.it_value.tv_sec || cur.it_value.tv_nsec) fail("disarmed timer is armed (%.3f s)", ts(cur.it_value));
    timerfd_gettime(abs, &cur);
    if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != 10000000) fail("absolute timer interval %.3f s, expected 0.01", ts(cur.it_interval));
    uint64_t ticks = 0;
    struct timespec t0, t1;
    // The count lies between what was due just before the read and just after it: a process
    // preempted between the read and the clock (CI under load) widens the range upwards only,
    // while a restore that lost the downtime still falls below it.
    clock_gettime(CLOCK_REALTIME, &t0);
    ssize_t n = read(abs, &ticks, 8);
    clock_gettime(CLOCK_REALTIME, &t1);
    double lo = ts(t0) - ts(start), hi = ts(t1) - ts(start);
    if (hi < 0) {
        if (n != -1 || errno != EAGAIN) fail("absolute timer fired before its start");
    } else if (lo >= 0) {
        // A period may be counted a little after its due time (timer slack), never before.
        long least = (long)(lo / 0.01) + 1 - 2, most = (long)(hi / 0.01) + 1;
        if (n != 8 || (long)ticks < least || (long)ticks > most)
            fail("absolute timer counted %llu periods, expected %ld..%ld (%.3f..%.3f s since its start)",
                 (unsigned long long)ticks, least, most, lo, hi);
    }
    return test_report();
}
