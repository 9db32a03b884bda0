// Environment and command line must read back unchanged, from libc and from /proc.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t slurp(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    size_t off = 0;
    ssize_t n;
    while (off < len && (n = read(fd, buf + off, len - off)) > 0) off += n;
    close(fd);
    return off;
}

int main(int argc, char **argv) {
    static char cmd0[8192], env0[65536], cmd1[8192], env1[65536];
    const char *value = "zdtm-env-value with spaces =&*";
    setenv("ZDTM_ENV00", value, 1);
    test_init(argc, argv);
    size_t c0 = slurp("/proc/self/cmdline", cmd0, sizeof(cmd0));
    size_t e0 = slurp("/proc/self/environ", env0, sizeof(env0));
    char *argv0 = strdup(argv[0]);
    test_daemon();
    test_waitsig();

    const char *got = getenv("ZDTM_ENV00");
    if (!got || strcmp(got, value)) fail("getenv ZDTM_ENV00: expected '%s', got '%s'", value, got ? got : "(null)");
    if (strcmp(argv[0], argv0)) fail("argv[0] changed: '%s' -> '%s'", argv0, argv[0]);
    size_t c1 = slurp("/proc/self/cmdline", cmd1, sizeof(cmd1));
    size_t e1 = slurp("/proc/self/environ", env1, sizeof(env1));
    if (c0 == 0 || c1 != c0 || memcmp(cmd0, cmd1, c0)) fail("/proc/self/cmdline changed (%zu -> %zu bytes)", c0, c1);
    if (e0 == 0 || e1 != e0 || memcmp(env0, env1, e0)) fail("/proc/self/environ changed (%zu -> %zu bytes)", e0, e1);
    return test_report();
}
