// FPU/vector registers held live across the checkpoint. One asm block loads every zmm (or
// ymm/xmm) register and the opmask registers once, then loops: compares each register with
// its memory copy (plus MXCSR and the x87 control word), sleeps via a raw nanosleep (the
// kernel keeps user vector state), and polls the stop flag. They are never reloaded, so a
// restore that loses or mixes up any of them is seen, and named.
// Extra argument "zmm", "ymm" or "xmm" forces a width (default: the widest available).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <cpuid.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

// One block, so the asm needs only two address registers.
static struct st {
    uint64_t want[32 * 8];   // 0: one 64-byte slot per register
    uint64_t got[32 * 8];    // 2048
    uint64_t kwant[8];       // 4096
    uint64_t kgot[8];        // 4160
    uint32_t mx_now, mx_want, cw_now, cw_want; // 4224
    int32_t bad;             // 4240: register index found wrong inside the loop, or -1
    int32_t pad;
    struct timespec nap;     // 4248
} S __attribute__((aligned(64)));
_Static_assert(offsetof(struct st, got) == 2048 && offsetof(struct st, kwant) == 4096 && offsetof(struct st, kgot) == 4160 &&
               offsetof(struct st, mx_now) == 4224 && offsetof(struct st, bad) == 4240 && offsetof(struct st, nap) == 4248,
               "asm offsets");

enum { BAD_K = 32, BAD_MXCSR = 40, BAD_X87CW = 41 };

#define FOR15(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14)
#define FOR32(M) FOR15(M) M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define FOR7(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

// Loop head/tail shared by all widths: eax = index of what is being checked, edx = inner count.
#define CTRL_CHECKS \
    "mov $40, %%eax\n stmxcsr 4224(%[s])\n mov 4224(%[s]), %%ecx\n cmp 4228(%[s]), %%ecx\n jne 8f\n" \
    "mov $41, %%eax\n fnstcw 4232(%[s])\n movzwl 4232(%[s]), %%ecx\n cmp 4236(%[s]), %%ecx\n jne 8f\n"
#define LOOP_HEAD "1: mov $2000, %%edx\n 2:\n"  // checks per nap
#define LOOP_TAIL \
    CTRL_CHECKS \
    "dec %%edx\n jnz 2b\n" \
    "cmpl $0, (%[stop])\n jne 9f\n" \
    "mov $35, %%eax\n lea 4248(%[s]), %%rdi\n xor %%esi, %%esi\n syscall\n jmp 1b\n" \
    "8: mov %%eax, 4240(%[s])\n 9:\n"
#define GPR_CLOBBERS "rax", "rcx", "rdx", "rdi", "rsi", "r11", "memory", "cc"
#define XMM_CLOBBERS16 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
    "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

#define LOADZ(i) "vmovdqu64 " #i "*64(%[s]), %%zmm" #i "\n"
#define CHECKZ(i) "mov $" #i ", %%eax\n vpcmpq $4, " #i "*64(%[s]), %%zmm" #i ", %%k0\n kortestw %%k0, %%k0\n jnz 8f\n"
#define STOREZ(i) "vmovdqu64 %%zmm" #i ", 2048+" #i "*64(%[s])\n"
#define LOADK(i) "kmovq 4096+" #i "*8(%[s]), %%k" #i "\n"
#define CHECKK(i) "mov $" #i "+32, %%eax\n kmovq %%k" #i ", %%rcx\n cmp 4096+" #i "*8(%[s]), %%rcx\n jne 8f\n"
#define STOREK(i) "kmovq %%k" #i ", 4160+" #i "*8(%[s])\n"

__attribute__((target("avx512f,avx512bw")))
static void zmm_hold(void) {
    __asm__ volatile(
        FOR32(LOADZ) FOR7(LOADK)
        LOOP_HEAD FOR32(CHECKZ) FOR7(CHECKK) LOOP_TAIL
        FOR32(STOREZ) FOR7(STOREK)
        :
        : [s] "r"(&S), [stop] "r"(&zt_stop)
        : GPR_CLOBBERS, XMM_CLOBBERS16,
          "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26",
          "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
}

// ymm15/xmm15 are the compare scratch, so 15 registers hold patterns.
#define LOADY(i) "vmovdqu " #i "*64(%[s]), %%ymm" #i "\n"
#define CHECKY(i) "mov $" #i ", %%eax\n vxorps " #i "*64(%[s]), %%ymm" #i ", %%ymm15\n vptest %%ymm15, %%ymm15\n jnz 8f\n"
#define STOREY(i) "vmovdqu %%ymm" #i ", 2048+" #i "*64(%[s])\n"

__attribute__((target("avx")))
static void ymm_hold(void) {
    __asm__ volatile(
        FOR15(LOADY) LOOP_HEAD FOR15(CHECKY) LOOP_TAIL FOR15(STOREY)
        :
        : [s] "r"(&S), [stop] "r"(&zt_stop)
        : GPR_CLOBBERS, XMM_CLOBBERS16);
}

#define LOADX(i) "movdqa " #i "*64(%[s]), %%xmm" #i "\n"
#define CHECKX(i) "mov $" #i ", %%eax\n movdqa %%xmm" #i ", %%xmm15\n pcmpeqb " #i "*64(%[s]), %%xmm15\n" \
    " pmovmskb %%xmm15, %%ecx\n cmp $0xffff, %%ecx\n jne 8f\n"
#define STOREX(i) "movdqa %%xmm" #i ", 2048+" #i "*64(%[s])\n"

static void xmm_hold(void) {
    __asm__ volatile(
        FOR15(LOADX) LOOP_HEAD FOR15(CHECKX) LOOP_TAIL FOR15(STOREX)
        :
        : [s] "r"(&S), [stop] "r"(&zt_stop)
        : GPR_CLOBBERS, XMM_CLOBBERS16);
}

static int os_saves(unsigned mask) {
    unsigned a, b, c, d, lo, hi;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; // OSXSAVE
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & mask) == mask;
}
static int has_avx(void) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    __get_cpuid(1, &a, &b, &c, &d);
    return (c & (1u << 28)) && os_saves(0x6);
}
static int has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16)) || !(b & (1u << 30))) return 0; // F, BW
    return has_avx() && os_saves(0xe6);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    enum { XMM, YMM, ZMM } mode = has_avx512() ? ZMM : has_avx() ? YMM : XMM;
    if (zt_argc > 1) {
        const char *w = zt_argv[1];
        int want = !strcmp(w, "zmm") ? ZMM : !strcmp(w, "ymm") ? YMM : !strcmp(w, "xmm") ? XMM : -1;
        if (want < 0) fail("unknown width '%s'", w);
        if (want > (int)mode) fail("%s requested but not available", w);
        mode = want;
    }
    const char *rn = mode == ZMM ? "zmm" : mode == YMM ? "ymm" : "xmm";
    int nregs = mode == ZMM ? 32 : 15, words = mode == ZMM ? 8 : mode == YMM ? 4 : 2;
    for (int i = 0; i < 32 * 8; i++) S.want[i] = pattern_word(0xf00, i);
    for (int i = 1; i < 8; i++) S.kwant[i] = pattern_word(0xbee, i);
    S.mx_want = 0x9fc0;   // FZ and DAZ set: not the default 0x1f80
    S.cw_want = 0x027f;   // 53-bit precision instead of 64: not the default 0x037f
    S.bad = -1;
    S.nap.tv_nsec = 10 * 1000 * 1000;
    unsigned short cw = S.cw_want;
    __asm__ volatile("fldcw %0" : : "m"(cw));
    __asm__ volatile("ldmxcsr %0" : : "m"(S.mx_want));
    test_msg("holding %s0-%d%s live", rn, nregs - 1, mode == ZMM ? " and k1-7" : "");
    test_daemon();
    if (mode == ZMM) zmm_hold(); else if (mode == YMM) ymm_hold(); else xmm_hold();
    if (S.bad >= 0) {
        // Stopped looping on a mismatch; still wait for SIGTERM as the protocol says.
        if (S.bad < 32) {
            int r = S.bad, w = 0;
            while (w < words - 1 && S.got[r * 8 + w] == S.want[r * 8 + w]) w++;
            fail("%s%d changed while held (seen in the loop): qword %d is %#llx, expected %#llx", rn, r, w,
                 (unsigned long long)S.got[r * 8 + w], (unsigned long long)S.want[r * 8 + w]);
        } else if (S.bad < BAD_MXCSR) {
            int k = S.bad - BAD_K;
            fail("k%d changed while held (seen in the loop): %#llx, expected %#llx", k, (unsigned long long)S.kgot[k],
                 (unsigned long long)S.kwant[k]);
        }
        else if (S.bad == BAD_MXCSR) fail("MXCSR %#x, expected %#x (seen in the loop)", S.mx_now, S.mx_want);
        else fail("x87 control word %#x, expected %#x (seen in the loop)", S.cw_now & 0xffff, S.cw_want);
        test_waitsig();
    }
    unsigned short cw_got;
    unsigned mx_got;
    __asm__ volatile("fnstcw %0" : "=m"(cw_got));
    __asm__ volatile("stmxcsr %0" : "=m"(mx_got));
    if (cw_got != S.cw_want) fail("x87 control word %#x, expected %#x", cw_got, S.cw_want);
    if (mx_got != S.mx_want) fail("MXCSR %#x, expected %#x", mx_got, S.mx_want);
    for (int r = 0; r < nregs; r++)
        for (int w = 0; w < words; w++)
            if (S.got[r * 8 + w] != S.want[r * 8 + w]) {
                fail("%s%d qword %d: %#llx, expected %#llx", rn, r, w, (unsigned long long)S.got[r * 8 + w],
                     (unsigned long long)S.want[r * 8 + w]);
                break;
            }
    if (mode == ZMM)
        for (int k = 1; k < 8; k++)
            if (S.kgot[k] != S.kwant[k])
                fail("k%d: %#llx, expected %#llx", k, (unsigned long long)S.kgot[k], (unsigned long long)S.kwant[k]);
    return test_report();
}
