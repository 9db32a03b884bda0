// A pipe holding 768 KiB in flight (pipe grown to 1 MiB) keeps every byte, in order.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define LEN (768 << 10)

int main(int argc, char **argv) {
    test_init(argc, argv);
    int p[2];
    if (pipe2(p, O_NONBLOCK)) fail("pipe2: %m");
    if (fcntl(p[1], F_SETPIPE_SZ, 1 << 20) < 0) fail("F_SETPIPE_SZ 1 MiB: %m");
    char *data = malloc(LEN), *back = malloc(LEN + 1);
    datagen(data, LEN, 0x9e3779b9);
    // Many writes of uneven sizes: many pipe buffers, some partly filled.
    size_t off = 0, step = 1000;
    while (off < LEN) {
        size_t n = off + step > LEN ? LEN - off : step;
        if (write(p[1], data + off, n) != (ssize_t)n) fail("write at %zu: %m", off);
        off += n;
        step = step * 7 % 65521 + 1;
    }
    free(data);
    test_daemon();
    test_waitsig();
    size_t got = 0;
    for (;;) {
        ssize_t n = read(p[0], back + got, LEN + 1 - got);
        if (n <= 0) break;
        got += n;
    }
    if (got != LEN) fail("pipe holds %zu bytes, expected %d", got, LEN);
    else datachk_fail("pipe data", back, LEN, 0x9e3779b9);
    return test_report();
}
