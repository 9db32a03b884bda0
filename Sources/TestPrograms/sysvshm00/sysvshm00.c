// SysV shm segments of the tree's own IPC namespace come back with the same ids, keys, modes,
// sizes and bytes: one attached by a parent and its child (still shared after restore), one
// attached by no one, one removed (IPC_RMID) while attached, and an attachment mprotect'ed
// read-only. The namespace's shm limits come back too.
// ns flavour only: it changes the IPC namespace zdtm gives it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY_A 0x5a5a0001
#define KEY_B 0x5a5a0002
#define SIZE_A (3 * 4096 + 100)
#define SIZE_B (5 * 4096)
#define SIZE_D (2 * 4096)

static long readnum(const char *p) {
    FILE *f = fopen(p, "r");
    long v = -1;
    if (!f || fscanf(f, "%ld", &v) != 1) fail("read %s: %m", p);
    if (f) fclose(f);
    return v;
}

static void writenum(const char *p, long v) {
    FILE *f = fopen(p, "w");
    if (!f || fprintf(f, "%ld\n", v) < 0) fail("write %s: %m", p);
    if (f && fclose(f)) fail("write %s: %m", p);
}

static void same(const char *what, int id, int key, size_t size, int mode, int nattch) {
    struct shmid_ds d;
    if (shmctl(id, IPC_STAT, &d)) { fail("%s: shm id %d is gone: %m", what, id); return; }
    if (d.shm_perm.__key != key) fail("%s: key %#x, expected %#x", what, d.shm_perm.__key, key);
    if (d.shm_segsz != size) fail("%s: size %zu, expected %zu", what, (size_t)d.shm_segsz, size);
    if ((d.shm_perm.mode & 01777) != mode) fail("%s: mode %o, expected %o", what, d.shm_perm.mode & 01777, mode);
    if (d.shm_perm.uid != 1234 || d.shm_perm.gid != 4321) fail("%s: owner %u:%u, expected 1234:4321", what, d.shm_perm.uid, d.shm_perm.gid);
    if ((int)d.shm_nattch != nattch) fail("%s: %d attachments, expected %d", what, (int)d.shm_nattch, nattch);
}

static void own(int id) {
    struct shmid_ds d;
    if (shmctl(id, IPC_STAT, &d)) fail("shmctl: %m");
    d.shm_perm.uid = 1234; d.shm_perm.gid = 4321;
    if (shmctl(id, IPC_SET, &d)) fail("shmctl(IPC_SET): %m");
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    writenum("/proc/sys/kernel/shmmni", 1000);
    writenum("/proc/sys/kernel/shmmax", 1 << 30);
    writenum("/proc/sys/kernel/shm_next_id", 77);  // ids away from 0
    int a = shmget(KEY_A, SIZE_A, IPC_CREAT | IPC_EXCL | 0640);
    int b = shmget(KEY_B, SIZE_B, IPC_CREAT | IPC_EXCL | 0604);
    int d = shmget(IPC_PRIVATE, SIZE_D, 0600);
    if (a < 0 || b < 0 || d < 0) { fail("shmget: %m"); return test_report(); }
    own(a); own(b); own(d);
    char *pa = shmat(a, NULL, 0), *pd = shmat(d, NULL, 0);
    if (pa == (void *)-1 || pd == (void *)-1) { fail("shmat: %m"); return test_report(); }
    datagen(pa, SIZE_A - 16, 41);
    datagen(pd, SIZE_D, 43);
    char *pb = shmat(b, NULL, 0);
    if (pb == (void *)-1) { fail("shmat: %m"); return test_report(); }
    datagen(pb, SIZE_B, 42);
    if (shmdt(pb)) fail("shmdt: %m");
    if (shmctl(d, IPC_RMID, NULL)) fail("IPC_RMID: %m");
    char *ro = shmat(a, NULL, SHM_RDONLY);  // a second, read-only attachment of a
    if (ro == (void *)-1) fail("shmat ro: %m");
    volatile uint64_t *mark = (uint64_t *)(pa + SIZE_A - 16);
    pid_t child = test_fork();
    if (child == 0) {
        test_waitsig();
        while (*mark != 0x1234) usleep(1000);  // the parent's write after restore
        *mark = 0x5678;
        _exit(0);
    }
    test_daemon();
    test_waitsig();
    if (readnum("/proc/sys/kernel/shmmni") != 1000) fail("shmmni is %ld, expected 1000", readnum("/proc/sys/kernel/shmmni"));
    if (readnum("/proc/sys/kernel/shmmax") != 1 << 30) fail("shmmax is %ld", readnum("/proc/sys/kernel/shmmax"));
    if (shmget(KEY_A, 0, 0) != a || shmget(KEY_B, 0, 0) != b) fail("keys now name ids %d, %d; expected %d, %d", shmget(KEY_A, 0, 0), shmget(KEY_B, 0, 0), a, b);
    same("attached segment", a, KEY_A, SIZE_A, 0640, 4);  // twice by each
    same("detached segment", b, KEY_B, SIZE_B, 0604, 0);
    same("removed segment", d, IPC_PRIVATE, SIZE_D, 01600, 2);
    datachk_fail("attached segment", pa, SIZE_A - 16, 41);
    datachk_fail("removed segment", pd, SIZE_D, 43);
    if (ro != (void *)-1 && memcmp(ro, pa, SIZE_A)) fail("the read-only attachment differs from the other");
    char *qb = shmat(b, NULL, SHM_RDONLY);
    if (qb == (void *)-1) fail("shmat b after restore: %m");
    else datachk_fail("detached segment", qb, SIZE_B, 42);
    *mark = 0x1234;
    kill(child, SIGTERM);
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) fail("child: status %#x", st);
    if (*mark != 0x5678) fail("the child's write did not reach the parent: the segment is no longer shared");
    return test_report();
}
