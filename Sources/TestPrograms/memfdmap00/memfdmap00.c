// Mappings of shmem objects that are not plain shared anonymous memory: a memfd mapped shared
// and privately (its fd kept open), a memfd whose fd is closed while a child still maps it,
// and a private mapping of shared anonymous memory (through map_files). After restore, each
// shared mapping and fd is still the one object (a write through one shows in the others),
// private pages that were copied keep their own contents, and the ones not copied still read
// through to the object.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define LEN (16 * PG)

int main(int argc, char **argv) {
    test_init(argc, argv);
    int mfd = syscall(SYS_memfd_create, "cryo-map", 0);
    if (mfd < 0) fail("memfd_create: %m");
    if (ftruncate(mfd, LEN)) fail("ftruncate: %m");
    char *sh = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    char *pv = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
    if (sh == MAP_FAILED || pv == MAP_FAILED) fail("mmap memfd: %m");
    datagen(sh, LEN, 3);
    memset(pv + 2 * PG, 'P', PG);  // copied: its own now
    (void)pv[5 * PG];              // read only: still the object's

    // A memfd only a child maps (its fd closed everywhere).
    int cfd = syscall(SYS_memfd_create, "cryo-child", 0);
    if (ftruncate(cfd, 4 * PG)) fail("ftruncate: %m");
    char *csh = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
    close(cfd);
    datagen(csh, 4 * PG, 9);
    pid_t child = test_fork();
    if (child == 0) {
        test_waitsig();
        if (datachk(csh, 4 * PG, 9) >= 0) _exit(2);
        _exit(0);
    }
    munmap(csh, 4 * PG);

    // Private mapping of shared anonymous memory, the object kept by an fd.
    char *an = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char path[128];
    snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)an, (unsigned long)an + 4 * PG);
    int afd = open(path, O_RDWR);
    if (afd < 0) fail("open %s: %m", path);
    munmap(an, 4 * PG);
    if (pwrite(afd, "anon", 4, PG) != 4) fail("pwrite: %m");
    char *apv = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, afd, 0);
    if (apv == MAP_FAILED) fail("mmap private of shared anonymous memory: %m");
    apv[0] = 'C';  // copied

    test_daemon();
    test_waitsig();

    if (datachk(sh, LEN, 3) >= 0) fail("memfd shared mapping contents changed");
    if (pv[2 * PG] != 'P' || pv[3 * PG - 1] != 'P') fail("memfd private mapping lost its copied page");
    sh[5 * PG] = 'S';
    if (pv[5 * PG] != 'S') fail("memfd private mapping no longer reads through to the memfd (two objects)");
    if (pwrite(mfd, "FD", 2, 7 * PG) != 2) fail("pwrite memfd: %m");
    if (memcmp(sh + 7 * PG, "FD", 2)) fail("a write through the memfd fd does not show in its shared mapping (two objects)");
    if (apv[0] != 'C') fail("private mapping of shared anonymous memory lost its copied page");
    if (memcmp(apv + PG, "anon", 4)) fail("private mapping of shared anonymous memory: its pages are gone");
    if (pwrite(afd, "late", 4, 2 * PG) != 4) fail("pwrite: %m");
    if (memcmp(apv + 2 * PG, "late", 4)) fail("private mapping of shared anonymous memory no longer reads through to the object (two objects)");
    kill(child, SIGTERM);
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child: memfd it alone mapped lost its contents (status %x)", st);
    return test_report();
}
