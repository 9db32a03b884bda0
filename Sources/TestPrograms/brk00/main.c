// The heap (brk) keeps its size and contents, and can grow further after restore.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdint.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    char *start = sbrk(0);
    for (int i = 0; i < 4; i++)
        if (sbrk(64 * 4096) == (void *)-1) fail("sbrk grow %d: %m", i);
    char *end = sbrk(0);
    datagen(start, end - start, 0xb7c);
    test_daemon();
    test_waitsig();
    if (sbrk(0) != end) fail("brk is %p, expected %p", sbrk(0), (void *)end);
    long bad = datachk(start, end - start, 0xb7c);
    if (bad >= 0) fail("heap differs at +%ld", bad);
    char *more = sbrk(32 * 4096);
    if (more == (void *)-1) fail("sbrk after restore: %m");
    else {
        datagen(more, 32 * 4096, 0xb7d);
        if (datachk(more, 32 * 4096, 0xb7d) >= 0) fail("new heap pages do not hold data");
        if (datachk(start, end - start, 0xb7c) >= 0) fail("old heap changed after growing");
    }
    return test_report();
}
