#include "ckstream.h"
#include <nmmintrin.h>
#include <pthread.h>
#include <string.h>

/* CRC-32C with the SSE4.2 instruction, three streams at once: the instruction has a latency
   of three cycles and a throughput of one, so one stream runs at a third of the speed. The
   three CRCs are joined by shifting with precomputed "append N zero bytes" tables
   (Mark Adler's method, crc32c.c, zlib licence terms). */

#define POLY 0x82f63b78u
#define LONG 8192
#define SHORT 256

static uint32_t zeros_long[4][256], zeros_short[4][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(mat, mat[n]);
}

/* The operator that appends len (a power of two) zero bytes to a CRC. */
static void zeros_op(uint32_t *even, size_t len) {
    uint32_t odd[32], row = 1;
    odd[0] = POLY;
    for (int n = 1; n < 32; n++) { odd[n] = row; row <<= 1; }
    gf2_square(even, odd);   /* two zero bits */
    gf2_square(odd, even);   /* four */
    do {
        gf2_square(even, odd);
        len >>= 1;
        if (len == 0) return;
        gf2_square(odd, even);
        len >>= 1;
    } while (len);
    for (int n = 0; n < 32; n++) even[n] = odd[n];
}

static void zeros_table(uint32_t zeros[][256], size_t len) {
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_times(op, n);
        zeros[1][n] = gf2_times(op, n << 8);
        zeros[2][n] = gf2_times(op, n << 16);
        zeros[3][n] = gf2_times(op, n << 24);
    }
}

static void make_tables(void) {
    zeros_table(zeros_long, LONG);
    zeros_table(zeros_short, SHORT);
}

static inline uint32_t shift(uint32_t zeros[][256], uint32_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

static inline uint64_t load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

__attribute__((target("sse4.2")))
static uint64_t three_way(uint64_t crc0, const unsigned char **next, size_t *len, size_t block, uint32_t zeros[][256]) {
    while (*len >= block * 3) {
        uint64_t crc1 = 0, crc2 = 0;
        const unsigned char *p = *next, *end = p + block;
        do {
            crc0 = _mm_crc32_u64(crc0, load64(p));
            crc1 = _mm_crc32_u64(crc1, load64(p + block));
            crc2 = _mm_crc32_u64(crc2, load64(p + 2 * block));
            p += 8;
        } while (p < end);
        crc0 = shift(zeros, (uint32_t)crc0) ^ crc1;
        crc0 = shift(zeros, (uint32_t)crc0) ^ crc2;
        *next += block * 3;
        *len -= block * 3;
    }
    return crc0;
}

__attribute__((target("sse4.2")))
uint32_t ck_crc32c(uint32_t crc, const void *buf, size_t len) {
    const unsigned char *p = buf;
    uint64_t c = ~crc;
    if (len >= SHORT * 3) {
        pthread_once(&tables_once, make_tables);
        c = three_way(c, &p, &len, LONG, zeros_long);
        c = three_way(c, &p, &len, SHORT, zeros_short);
    }
    while (len >= 8) {
        c = _mm_crc32_u64(c, load64(p));
        p += 8;
        len -= 8;
    }
    while (len--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
