// Sleeps in nanosleep; monotonic time must keep moving forward sanely: never back, each
// completed sleep at least as long as asked, and no absurd jump.
#include "zdtmtst.h"
#include <errno.h>
#include <time.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct timespec start, prev, now;
    long long slept = 0;
    int naps = 0;
    const long long nap = 100 * 1000 * 1000;
    clock_gettime(CLOCK_MONOTONIC, &start);
    prev = now = start;
    test_daemon();
    while (!test_stopped()) {
        struct timespec d = { 0, nap };
        // EINTR is fine (SIGTERM); anything else is not.
        int r = nanosleep(&d, NULL);
        if (r && errno != EINTR) fail("nanosleep: errno %d", errno);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long dt = ns(now) - ns(prev);
        if (dt < 0) fail("monotonic clock went back: %lld.%09lld -> %lld.%09lld", ns(prev) / 1000000000,
                         ns(prev) % 1000000000, ns(now) / 1000000000, ns(now) % 1000000000);
        else if (!r && dt < nap) fail("a full %lld ns nanosleep took only %lld ns of monotonic time", nap, dt);
        if (!r) { slept += nap; naps++; }
        prev = now;
    }
    long long total = ns(now) - ns(start);
    if (total < slept) fail("%d sleeps of %lld ns took %lld ns in all, expected >= %lld", naps, nap, total, slept);
    if (total > 3600LL * 1000000000) fail("monotonic clock jumped by %lld s", total / 1000000000);
    test_msg("%d naps in %lld ms", naps, total / 1000000);
    return test_report();
}
