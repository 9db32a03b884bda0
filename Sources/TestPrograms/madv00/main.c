// madvise flags of mappings (VmFlags dc, wf, dd, hg, nh, mg, sr, rr) and mlock (lo) come back, and act: after restore
// a forked child lacks the MADV_DONTFORK mapping and reads zeros from the MADV_WIPEONFORK one,
// while every mapping still holds its data in the restored process itself.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

#define PAGES 4
struct region { const char *name; int advice; const char *flag; char *addr; int set; };
static struct region regions[] = {
    { "MADV_DONTFORK", MADV_DONTFORK, "dc" },
    { "MADV_WIPEONFORK", MADV_WIPEONFORK, "wf" },
    { "MADV_DONTDUMP", MADV_DONTDUMP, "dd" },
    { "MADV_HUGEPAGE", MADV_HUGEPAGE, "hg" },
    { "MADV_NOHUGEPAGE", MADV_NOHUGEPAGE, "nh" },
    { "MADV_MERGEABLE", MADV_MERGEABLE, "mg" },
    { "MADV_SEQUENTIAL", MADV_SEQUENTIAL, "sr" },
    { "MADV_RANDOM", MADV_RANDOM, "rr" },
    { "mlock", -1, "lo" },
};
#define NR (int)(sizeof(regions) / sizeof(regions[0]))

// The VmFlags line of the mapping starting at addr, from /proc/self/smaps.
static int vmflags(void *addr, char *out, size_t len) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0, found = -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (void *)s == addr;
            continue;
        }
        if (in && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, len, "%s", line + 8);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static int has_flag(const char *flags, const char *f) {
    char pat[8];
    snprintf(pat, sizeof(pat), " %s", f);
    for (const char *p = flags; (p = strstr(p, pat)); p++)
        if (p[3] == ' ' || p[3] == '\n' || p[3] == 0) return 1;
    return 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    // One reservation, a guard page between regions so that none merges with another.
    size_t step = (PAGES + 1) * 4096;
    char *base = mmap(NULL, step * NR, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) fail("mmap: %m");
    for (int i = 0; i < NR; i++) {
        struct region *r = &regions[i];
        r->addr = mmap(base + i * step, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (r->addr == MAP_FAILED) fail("mmap %s: %m", r->name);
        datagen(r->addr, PAGES * 4096, 100 + i);
        if (r->advice == -1) { if (mlock(r->addr, PAGES * 4096)) fail("mlock: %m"); else r->set = 1; }
        else if (madvise(r->addr, PAGES * 4096, r->advice) == 0) r->set = 1;
        else if (errno == EINVAL && r->advice == MADV_MERGEABLE) test_msg("no KSM here: %s left out\n", r->name);
        else fail("madvise %s: %m", r->name);
        char fl[256];
        if (r->set && (vmflags(r->addr, fl, sizeof(fl)) || !has_flag(fl, r->flag)))
            fail("%s: VmFlags lack %s before the dump", r->name, r->flag);
    }
    test_daemon();
    test_waitsig();

    for (int i = 0; i < NR; i++) {
        struct region *r = &regions[i];
        char fl[256] = "";
        if (vmflags(r->addr, fl, sizeof(fl))) { fail("%s: the mapping at %p is gone", r->name, r->addr); continue; }
        if (r->set && !has_flag(fl, r->flag)) fail("%s: VmFlags lost %s (now:%s)", r->name, r->flag, fl);
        datachk_fail(r->name, r->addr, PAGES * 4096, 100 + i);
    }
    // And the advice still acts on fork.
    pid_t c = fork();
    if (c == 0) {
        char fl[256];
        if (vmflags(regions[0].addr, fl, sizeof(fl)) == 0) _exit(1);  // DONTFORK mapping inherited
        for (int k = 0; k < PAGES * 4096; k++) if (regions[1].addr[k]) _exit(2);  // WIPEONFORK not wiped
        if (datachk(regions[2].addr, PAGES * 4096, 102) != -1) _exit(3);
        _exit(0);
    }
    int st;
    if (waitpid(c, &st, 0) != c) fail("waitpid: %m");
    else if (!WIFEXITED(st) || WEXITSTATUS(st))
        fail("forked child after restore: %s", WIFEXITED(st) ? (WEXITSTATUS(st) == 1 ? "inherited the MADV_DONTFORK mapping" :
             WEXITSTATUS(st) == 2 ? "the MADV_WIPEONFORK mapping was not wiped" : "MADV_DONTDUMP data differs") : "killed");
    return test_report();
}
