// Memory the kernel writes: read() from a file into a buffer, chunk after chunk at changing
// offsets, all the time. Only the kernel writes the buffer (copy_to_user); the program keeps a
// checksum of every chunk. A kernel write that dirty tracking missed leaves a stale chunk.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 4096UL
#define CHUNKS 2048
#define FILE_CHUNKS 512

static uint64_t fnv(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int fd = open("dirty02.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("create dirty02.data: %m");
    static unsigned char page[CHUNK];
    for (int c = 0; c < FILE_CHUNKS; c++) {
        datagen(page, CHUNK, 1000 + c);
        if (write(fd, page, CHUNK) != (ssize_t)CHUNK) fail("write dirty02.data: %m");
    }
    unsigned char *buf = mmap(NULL, CHUNKS * CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static uint64_t sum[CHUNKS];
    if (buf == MAP_FAILED) fail("mmap: %m");
    for (int c = 0; c < CHUNKS; c++) {
        if (pread(fd, buf + c * CHUNK, CHUNK, (off_t)(c % FILE_CHUNKS) * CHUNK) != (ssize_t)CHUNK) fail("pread: %m");
        sum[c] = fnv(buf + c * CHUNK, CHUNK);
    }
    volatile int inflight = -1;
    uint64_t x = 0x2545F4914F6CDD1DULL, reads = 0;
    test_daemon();
    while (!test_stopped()) {
        for (int k = 0; k < 32; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            int c = x % CHUNKS;
            off_t off = (off_t)((x >> 16) % FILE_CHUNKS) * CHUNK;
            inflight = c;
            if (pread(fd, buf + c * CHUNK, CHUNK, off) != (ssize_t)CHUNK) { fail("pread chunk %d: %m", c); break; }
            sum[c] = fnv(buf + c * CHUNK, CHUNK);
            inflight = -1;
            reads++;
        }
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    int bad = 0, first = -1;
    for (int c = 0; c < CHUNKS; c++) {
        if (c == inflight) continue;
        if (fnv(buf + c * CHUNK, CHUNK) != sum[c] && bad++ == 0) first = c;
    }
    if (bad) fail("%d of %d chunks differ from their checksum after %lu reads; first: chunk %d", bad, CHUNKS, (unsigned long)reads, first);
    close(fd);
    unlink("dirty02.data");
    return test_report();
}
