// N MiB (first extra argument, default 64) of written anonymous memory, verified after.
// The benchmark's subject, and a plain memory workload for zdtm.
#include "zdtmtst.h"
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    size_t mib = zt_argc > 1 ? strtoul(zt_argv[1], NULL, 10) : 64;
    size_t len = mib << 20;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("mmap %zu MiB: %m", mib);
    datagen(m, len, 1024);
    test_daemon();
    test_waitsig();
    long bad = datachk(m, len, 1024);
    if (bad >= 0) fail("%zu MiB region differs at +%ld", mib, bad);
    return test_report();
}
