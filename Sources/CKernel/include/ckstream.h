#ifndef CKSTREAM_H
#define CKSTREAM_H
#include <stddef.h>
#include <stdint.h>
// CRC-32C (Castagnoli) with the SSE4.2 instruction: frames of checkpoint streams carry it,
// and a byte loop in Swift is far too slow for GiBs of pages in a debug build.
uint32_t ck_crc32c(uint32_t crc, const void *buf, size_t len);
#endif
