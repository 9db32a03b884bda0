// A large sparse mapping: 64 GiB reserved (MAP_NORESERVE), 10 MiB touched in scattered
// places. Untouched pages must stay zero and cost nothing in the image.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <sys/mman.h>

#define RESERVE (64UL << 30)
#define CHUNKS 40
#define CHUNK (256UL << 10)   /* 40 x 256 KiB = 10 MiB */

int main(int argc, char **argv) {
    test_init(argc, argv);
    char *m = mmap(NULL, RESERVE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) fail("mmap 64 GiB: %m");
    size_t stride = RESERVE / CHUNKS;
    for (int i = 0; i < CHUNKS; i++) datagen(m + i * stride, CHUNK, 640 + i);
    test_daemon();
    test_waitsig();
    for (int i = 0; i < CHUNKS; i++) {
        long bad = datachk(m + i * stride, CHUNK, 640 + i);
        if (bad >= 0) { fail("chunk %d at +%#zx: data differs at +%ld", i, i * stride, bad); break; }
        // A sample of the untouched space around each chunk must read as zero.
        const uint64_t *z = (const uint64_t *)(m + i * stride + CHUNK);
        for (size_t k = 0; k < 4096 / 8; k++)
            if (z[k]) { fail("untouched page after chunk %d is not zero", i); break; }
    }
    return test_report();
}
