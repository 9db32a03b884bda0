// Environment and command line must read back unchanged, from libc and from /proc (which reads
// the mm's arg/env ranges, so a restore that loses them shows up there).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VAR "ZDTM_ENV00"
#define VALUE "zdtm-env-value with spaces =&* \xc3\xa9"
#define ARG "extra arg with spaces"

extern char **environ;

static size_t slurp(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    size_t off = 0;
    ssize_t n;
    while (off < len && (n = read(fd, buf + off, len - off)) > 0) off += n;
    close(fd);
    return off;
}

// The first difference, as "offset N: 'a' vs 'b'", for the failure message.
static const char *diff(const char *a, size_t la, const char *b, size_t lb) {
    static char out[200];
    size_t i = 0;
    while (i < la && i < lb && a[i] == b[i]) i++;
    snprintf(out, sizeof(out), "lengths %zu -> %zu, first difference at byte %zu: '%.40s' -> '%.40s'",
             la, lb, i, i < la ? a + i : "", i < lb ? b + i : "");
    return out;
}

static int contains(const char *block, size_t len, const char *entry) {
    for (size_t off = 0; off < len; off += strlen(block + off) + 1)
        if (!strcmp(block + off, entry)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    static char cmd0[8192], env0[65536], cmd1[8192], env1[65536], joined[8192];
    // Put the variable and an extra argument into the initial stack (what /proc shows) by
    // re-executing ourselves once; exec keeps the pid the launcher knows.
    if (!getenv(VAR)) {
        char *nargv[argc + 2];
        for (int i = 0; i < argc; i++) nargv[i] = argv[i];
        nargv[argc] = ARG;
        nargv[argc + 1] = NULL;
        setenv(VAR, VALUE, 1);
        execve("/proc/self/exe", nargv, environ);
        perror("re-exec");
        return 1;
    }
    test_init(argc, argv);
    if (zt_argc != 2 || strcmp(zt_argv[1], ARG)) fail("extra argument missing after re-exec");
    size_t c0 = slurp("/proc/self/cmdline", cmd0, sizeof(cmd0));
    size_t e0 = slurp("/proc/self/environ", env0, sizeof(env0));
    size_t jl = 0;
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]) + 1;
        if (jl + l > sizeof(joined)) fail("argv too long");
        memcpy(joined + jl, argv[i], l);
        jl += l;
    }
    if (c0 != jl || memcmp(cmd0, joined, jl)) fail("before: /proc/self/cmdline is not argv: %s", diff(joined, jl, cmd0, c0));
    if (!contains(env0, e0, VAR "=" VALUE)) fail("before: /proc/self/environ lacks " VAR);
    int nenv = 0;
    while (environ[nenv]) nenv++;
    char **argv_copy = calloc(argc, sizeof(char *));
    for (int i = 0; i < argc; i++) argv_copy[i] = strdup(argv[i]);
    test_daemon();
    test_waitsig();

    const char *got = getenv(VAR);
    if (!got || strcmp(got, VALUE)) fail("getenv " VAR ": expected '%s', got '%s'", VALUE, got ? got : "(null)");
    for (int i = 0; i < argc; i++)
        if (!argv[i] || strcmp(argv[i], argv_copy[i]))
            fail("argv[%d]: expected '%s', got '%s'", i, argv_copy[i], argv[i] ? argv[i] : "(null)");
    int n = 0;
    while (environ[n]) n++;
    if (n != nenv) fail("environ has %d entries, expected %d", n, nenv);
    size_t c1 = slurp("/proc/self/cmdline", cmd1, sizeof(cmd1));
    size_t e1 = slurp("/proc/self/environ", env1, sizeof(env1));
    if (c1 != c0 || memcmp(cmd0, cmd1, c0)) fail("/proc/self/cmdline changed: %s", diff(cmd0, c0, cmd1, c1));
    if (e1 != e0 || memcmp(env0, env1, e0)) fail("/proc/self/environ changed: %s", diff(env0, e0, env1, e1));
    return test_report();
}
