// eventfds keep their counters (one past 32 bits), EFD_SEMAPHORE and O_NONBLOCK.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    int e = eventfd(0, EFD_NONBLOCK), s = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    if (e < 0 || s < 0) fail("eventfd: %m");
    uint64_t v = 0x123456789ULL;
    if (write(e, &v, 8) != 8) fail("write: %m");
    test_daemon();
    test_waitsig();
    if (!(fcntl(e, F_GETFL) & O_NONBLOCK)) fail("eventfd lost O_NONBLOCK");
    uint64_t got = 0;
    if (read(e, &got, 8) != 8 || got != 0x123456789ULL) fail("counter %#llx, expected 0x123456789", (unsigned long long)got);
    if (read(e, &got, 8) != -1 || errno != EAGAIN) fail("counter not reset by read");
    for (int i = 0; i < 3; i++)
        if (read(s, &got, 8) != 8 || got != 1) { fail("semaphore read %d gave %llu (%m), expected 1", i, (unsigned long long)got); break; }
    if (read(s, &got, 8) != -1 || errno != EAGAIN) fail("semaphore counted more than 3");
    return test_report();
}
