// 256 MiB of pattern-filled anonymous memory, verified completely.
#include "zdtmtst.h"
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    size_t len = 256UL << 20;
    test_init(argc, argv);
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("mmap 256 MiB: %m");
    datagen(m, len, 256);
    test_daemon();
    test_waitsig();
    datachk_fail("256 MiB region", m, len, 256);
    return test_report();
}
