// SysV semaphore sets of the tree's own IPC namespace come back with the same ids, keys,
// modes and values, and still work: a child blocked in semop on one is woken by the parent
// after restore. The namespace's kernel/sem limits come back too.
// ns flavour only: it changes the IPC namespace zdtm gives it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY 0x5e5e0001
#define N 7

union semun { int val; struct semid_ds *buf; unsigned short *array; };

int main(int argc, char **argv) {
    test_init(argc, argv);
    FILE *f = fopen("/proc/sys/kernel/sem", "w");
    if (!f || fprintf(f, "300 31000 64 300\n") < 0 || fclose(f)) fail("write kernel/sem: %m");
    int a = semget(KEY, N, IPC_CREAT | IPC_EXCL | 0640);
    int b = semget(IPC_PRIVATE, 1, 0600);
    if (a < 0 || b < 0) { fail("semget: %m"); return test_report(); }
    unsigned short vals[N] = { 0, 1, 2, 300, 32767, 7, 65 };
    if (semctl(a, 0, SETALL, (union semun){ .array = vals })) fail("SETALL: %m");
    pid_t child = test_fork();
    if (child == 0) {
        struct sembuf op = { 0, -1, 0 };  // waits until the parent posts b after restore
        int r;
        while ((r = semop(b, &op, 1)) && errno == EINTR) {}  // the dump's stop interrupts semop, as any signal does
        _exit(r ? 2 : 0);
    }
    test_daemon();
    test_waitsig();
    char buf[128] = { 0 };
    f = fopen("/proc/sys/kernel/sem", "r");
    if (!f || !fgets(buf, sizeof(buf), f)) fail("read kernel/sem: %m");
    if (f) fclose(f);
    int s1, s2, s3, s4;
    if (sscanf(buf, "%d %d %d %d", &s1, &s2, &s3, &s4) != 4 || s1 != 300 || s2 != 31000 || s3 != 64 || s4 != 300) fail("kernel/sem is %s", buf);
    if (semget(KEY, 0, 0) != a) fail("key %#x names id %d, expected %d", KEY, semget(KEY, 0, 0), a);
    unsigned short got[N] = { 0 };
    if (semctl(a, 0, GETALL, (union semun){ .array = got })) fail("GETALL: %m");
    if (memcmp(got, vals, sizeof(vals))) fail("values %u %u %u %u %u %u %u", got[0], got[1], got[2], got[3], got[4], got[5], got[6]);
    struct semid_ds ds;
    if (semctl(a, 0, IPC_STAT, (union semun){ .buf = &ds })) fail("IPC_STAT: %m");
    else if ((ds.sem_perm.mode & 0777) != 0640 || ds.sem_nsems != N) fail("mode %o, %lu sems", ds.sem_perm.mode & 0777, (unsigned long)ds.sem_nsems);
    if (semctl(b, 0, GETNCNT) != 1) fail("%d waiters on the second set, expected the child", semctl(b, 0, GETNCNT));
    struct sembuf op = { 0, 1, 0 };
    if (semop(b, &op, 1)) fail("semop: %m");
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) fail("child: status %#x", st);
    return test_report();
}
