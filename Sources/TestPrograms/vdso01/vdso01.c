// A process that unmapped its vDSO and vvar stays without them after restore (cryo's own
// injected calls go through the vDSO, so it must be unmapped last). glibc's clock_gettime
// would jump into the vDSO, so time is read by the raw syscall from then on.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// Counts [vdso]/[vvar*] lines in /proc/self/maps, unmapping each one if `unmap`.
static int specials(int unmap) {
    char line[512];
    unsigned long s[8], e[8];
    int n = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    while (fgets(line, sizeof(line), f) && n < 8)
        if (strstr(line, "[vdso]") || strstr(line, "[vvar")) {
            sscanf(line, "%lx-%lx", &s[n], &e[n]);
            n++;
        }
    fclose(f);
    if (unmap)
        for (int i = 0; i < n; i++)
            if (munmap((void *)s[i], e[i] - s[i])) fail("munmap %lx: %m", s[i]);
    return n;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (specials(1) < 1) fail("no vDSO to unmap");
    if (specials(0) != 0) fail("the vDSO is still mapped after munmap");
    test_daemon();
    test_waitsig();
    int n = specials(0);
    if (n != 0) fail("%d vDSO/vvar mapping(s) came back after restore", n);
    struct timespec ts;
    if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts)) fail("clock_gettime: %m");
    return test_report();
}
