// FPU/vector registers held live across the checkpoint: one asm block loads every zmm (or ymm,
// or xmm) register and the opmask registers, loops (sleeping via raw syscalls, which keep
// vector state) until SIGTERM, then stores them for checking. x87 CW and MXCSR too.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <cpuid.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t want[32 * 8] __attribute__((aligned(64)));
static uint64_t got[32 * 8] __attribute__((aligned(64)));
static uint64_t kwant[8], kgot[8];
static struct timespec nap = { 0, 20 * 1000 * 1000 };

static int has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16)) || !(b & (1u << 30))) return 0;
    __get_cpuid(1, &a, &b, &c, &d);
    if (!(c & (1u << 27))) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6) == 0xe6;
}

#define LOADZ(i) "vmovdqu64 " #i "*64(%[w]), %%zmm" #i "\n"
#define STOREZ(i) "vmovdqu64 %%zmm" #i ", " #i "*64(%[g])\n"
#define SPIN \
    "1: cmpl $0, (%[stop])\n jne 2f\n" \
    "mov $35, %%eax\n mov %[nap], %%rdi\n xor %%esi, %%esi\n syscall\n jmp 1b\n 2:\n"

__attribute__((target("avx512f,avx512bw")))
static void zmm_hold(void) {
    __asm__ volatile(
        LOADZ(0) LOADZ(1) LOADZ(2) LOADZ(3) LOADZ(4) LOADZ(5) LOADZ(6) LOADZ(7)
        LOADZ(8) LOADZ(9) LOADZ(10) LOADZ(11) LOADZ(12) LOADZ(13) LOADZ(14) LOADZ(15)
        LOADZ(16) LOADZ(17) LOADZ(18) LOADZ(19) LOADZ(20) LOADZ(21) LOADZ(22) LOADZ(23)
        LOADZ(24) LOADZ(25) LOADZ(26) LOADZ(27) LOADZ(28) LOADZ(29) LOADZ(30) LOADZ(31)
        "kmovq 8(%[kw]), %%k1\n kmovq 16(%[kw]), %%k2\n kmovq 24(%[kw]), %%k3\n kmovq 32(%[kw]), %%k4\n"
        "kmovq 40(%[kw]), %%k5\n kmovq 48(%[kw]), %%k6\n kmovq 56(%[kw]), %%k7\n"
        SPIN
        STOREZ(0) STOREZ(1) STOREZ(2) STOREZ(3) STOREZ(4) STOREZ(5) STOREZ(6) STOREZ(7)
        STOREZ(8) STOREZ(9) STOREZ(10) STOREZ(11) STOREZ(12) STOREZ(13) STOREZ(14) STOREZ(15)
        STOREZ(16) STOREZ(17) STOREZ(18) STOREZ(19) STOREZ(20) STOREZ(21) STOREZ(22) STOREZ(23)
        STOREZ(24) STOREZ(25) STOREZ(26) STOREZ(27) STOREZ(28) STOREZ(29) STOREZ(30) STOREZ(31)
        "kmovq %%k1, 8(%[kg])\n kmovq %%k2, 16(%[kg])\n kmovq %%k3, 24(%[kg])\n kmovq %%k4, 32(%[kg])\n"
        "kmovq %%k5, 40(%[kg])\n kmovq %%k6, 48(%[kg])\n kmovq %%k7, 56(%[kg])\n"
        :
        : [w] "r"(want), [g] "r"(got), [kw] "r"(kwant), [kg] "r"(kgot), [stop] "r"(&zt_stop), [nap] "r"(&nap)
        : "rax", "rdi", "rsi", "rcx", "r11", "memory", "cc",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
          "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31",
          "k1", "k2", "k3", "k4", "k5", "k6", "k7");
}

#define LOADY(i) "vmovdqu " #i "*64(%[w]), %%ymm" #i "\n"
#define STOREY(i) "vmovdqu %%ymm" #i ", " #i "*64(%[g])\n"
__attribute__((target("avx")))
static void ymm_hold(void) {
    __asm__ volatile(
        LOADY(0) LOADY(1) LOADY(2) LOADY(3) LOADY(4) LOADY(5) LOADY(6) LOADY(7)
        LOADY(8) LOADY(9) LOADY(10) LOADY(11) LOADY(12) LOADY(13) LOADY(14) LOADY(15)
        SPIN
        STOREY(0) STOREY(1) STOREY(2) STOREY(3) STOREY(4) STOREY(5) STOREY(6) STOREY(7)
        STOREY(8) STOREY(9) STOREY(10) STOREY(11) STOREY(12) STOREY(13) STOREY(14) STOREY(15)
        :
        : [w] "r"(want), [g] "r"(got), [stop] "r"(&zt_stop), [nap] "r"(&nap)
        : "rax", "rdi", "rsi", "rcx", "r11", "memory", "cc",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15");
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int avx512 = has_avx512();
    for (int i = 0; i < 32 * 8; i++) want[i] = pattern_word(0xf00, i);
    for (int i = 1; i < 8; i++) kwant[i] = pattern_word(0xbee, i);
    unsigned short cw = 0x027f, cw_got;   // 53-bit precision instead of 64: not the default
    unsigned mxcsr = 0x9fc0, mxcsr_got;   // FZ and DAZ set
    __asm__ volatile("fldcw %0" : : "m"(cw));
    __asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
    test_msg("holding %s registers", avx512 ? "zmm0-31 and k1-7" : "ymm0-15");
    test_daemon();
    if (avx512) zmm_hold(); else ymm_hold();
    __asm__ volatile("fnstcw %0" : "=m"(cw_got));
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr_got));
    if (cw_got != cw) fail("x87 control word %#x, expected %#x", cw_got, cw);
    if (mxcsr_got != mxcsr) fail("MXCSR %#x, expected %#x", mxcsr_got, mxcsr);
    int nregs = avx512 ? 32 : 16, words = avx512 ? 8 : 4;
    for (int r = 0; r < nregs; r++)
        for (int w = 0; w < words; w++)
            if (got[r * 8 + w] != want[r * 8 + w]) {
                fail("%s%d word %d: %#llx, expected %#llx", avx512 ? "zmm" : "ymm", r, w,
                     (unsigned long long)got[r * 8 + w], (unsigned long long)want[r * 8 + w]);
                r = nregs; break;
            }
    if (avx512)
        for (int k = 1; k < 8; k++)
            if (kgot[k] != kwant[k]) { fail("k%d: %#llx, expected %#llx", k, (unsigned long long)kgot[k], (unsigned long long)kwant[k]); break; }
    return test_report();
}
