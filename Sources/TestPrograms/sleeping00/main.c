// Sleeps in nanosleep; monotonic time must keep moving forward sanely.
#include "zdtmtst.h"
#include <errno.h>
#include <time.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct timespec start, prev, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    prev = start;
    test_daemon();
    while (!test_stopped()) {
        struct timespec d = { 0, 100 * 1000 * 1000 };
        // EINTR is fine (a signal or a restore); anything else is not.
        if (nanosleep(&d, NULL) && errno != EINTR) fail("nanosleep: errno %d", errno);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec < prev.tv_sec || (now.tv_sec == prev.tv_sec && now.tv_nsec < prev.tv_nsec))
            fail("monotonic clock went back: %ld.%09ld -> %ld.%09ld", prev.tv_sec, prev.tv_nsec, now.tv_sec, now.tv_nsec);
        prev = now;
    }
    if (now.tv_sec - start.tv_sec > 3600) fail("monotonic clock jumped by %ld s", now.tv_sec - start.tv_sec);
    return test_report();
}
