// The heap (brk) keeps its start, size and contents, and can grow further after restore.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG 4096L

// start_brk is field 47 of /proc/self/stat (after the parenthesised comm).
static unsigned long start_brk(void) {
    char buf[2048];
    int fd = open("/proc/self/stat", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (fd >= 0) close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 47; field++) p = strchr(p + 1, ' ');
    return p ? strtoul(p + 1, NULL, 10) : 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    unsigned long sb0 = start_brk();
    char *start = sbrk(0);
    if (!sb0 || sb0 > (unsigned long)start) fail("start_brk %#lx does not fit the break %p", sb0, (void *)start);
    for (int i = 0; i < 4; i++)
        if (sbrk((16 << i) * PG) == (void *)-1) fail("sbrk grow %d: %m", i);
    char *end = sbrk(0);
    datagen(start, end - start, 0xb7c);
    test_daemon();
    test_waitsig();

    unsigned long sb1 = start_brk();
    if (sb1 != sb0) fail("start_brk %#lx, expected %#lx", sb1, sb0);
    char *cur = sbrk(0);
    if (cur != end) fail("brk is %p, expected %p", (void *)cur, (void *)end);
    datachk_fail("heap grown before checkpoint", start, end - start, 0xb7c);
    char *more = sbrk(32 * PG);
    if (more == (void *)-1) fail("sbrk after restore: %m");
    else if (more != cur) fail("sbrk returned %p, expected the old break %p", (void *)more, (void *)cur);
    else {
        datagen(more, 32 * PG, 0xb7d);
        datachk_fail("heap grown after checkpoint", more, 32 * PG, 0xb7d);
        datachk_fail("old heap after growing", start, end - start, 0xb7c);
    }
    return test_report();
}
