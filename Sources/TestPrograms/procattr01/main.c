// Per-process memory attributes that restore used to drop silently: /proc/PID/coredump_filter
// and memory-deny-write-execute (PR_SET_MDWE, which systemd's MemoryDenyWriteExecute= uses).
// A child forked before the parent set MDWE must not have it after restore (cryo forks the
// restored child from the restored parent), and the parent must still refuse W+X mappings.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

static unsigned long filter(void) {
    char buf[32] = { 0 };
    int fd = open("/proc/self/coredump_filter", O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0) return ~0UL;
    close(fd);
    return strtoul(buf, NULL, 16);
}

static int set_filter(const char *hex) {
    int fd = open("/proc/self/coredump_filter", O_WRONLY);
    if (fd < 0) return -1;
    int ok = write(fd, hex, strlen(hex)) == (ssize_t)strlen(hex);
    close(fd);
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (set_filter("0x5")) fail("coredump_filter: %m");
    pid_t child = test_fork();
    if (child == 0) {
        if (set_filter("0x7b")) _exit(2);
        test_waitsig();
        if (filter() != 0x7b) _exit(3);
        if (prctl(PR_GET_MDWE, 0, 0, 0, 0) != 0) _exit(4);
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        _exit(p == MAP_FAILED ? 5 : 0);
    }
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)) fail("PR_SET_MDWE: %m");
    test_daemon();
    test_waitsig();
    if (filter() != 0x5) fail("coredump_filter is %lx, expected 5", filter());
    long m = prctl(PR_GET_MDWE, 0, 0, 0, 0);
    if (m != PR_MDWE_REFUSE_EXEC_GAIN) fail("PR_GET_MDWE gives %ld, expected %d", m, PR_MDWE_REFUSE_EXEC_GAIN);
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) fail("a W+X mapping was allowed after restore");
    kill(child, SIGTERM);
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) fail("child: status %#x (3: filter, 4: MDWE inherited, 5: W+X refused)", st);
    return test_report();
}
