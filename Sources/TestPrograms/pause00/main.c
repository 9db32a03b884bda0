// Blocked in pause() only: the syscall must be restarted correctly after restore.
#include "zdtmtst.h"
#include <errno.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    test_daemon();
    int wakeups = 0;
    while (!test_stopped()) {
        int r = pause();
        if (r != -1 || errno != EINTR) fail("pause returned %d errno %d", r, errno);
        wakeups++;
    }
    if (wakeups != 1) fail("pause woke %d times, expected once (by SIGTERM)", wakeups);
    return test_report();
}
