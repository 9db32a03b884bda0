// NUMA memory policies (what numactl and libnuma leave): the main thread's (interleave with
// MPOL_F_STATIC_NODES), a second thread's (preferred), a child's that stayed the default
// (forked before its parent set one), and an mbind over the middle of a mapping, which splits
// it. All read back the same through get_mempolicy after restore.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_INTERLEAVE 3
#define MPOL_F_STATIC_NODES (1 << 15)
#define MPOL_F_ADDR 2

static long set_policy(int mode, unsigned long mask) { return syscall(SYS_set_mempolicy, mode, &mask, 64); }
static int policy(void *addr, unsigned long *mask) {
    int mode = -1;
    unsigned long m[64] = { 0 };
    if (syscall(SYS_get_mempolicy, &mode, m, 4096, addr, addr ? MPOL_F_ADDR : 0)) return -1;
    *mask = m[0];
    return mode;
}

static volatile int thread_ok = -1, ready;
static void *thread_main(void *arg) {
    (void)arg;
    if (set_policy(MPOL_PREFERRED, 1)) { thread_ok = 0; ready = 1; return NULL; }
    ready = 1;
    while (!test_stopped()) usleep(10000);
    unsigned long mask;
    int mode = policy(NULL, &mask);
    thread_ok = mode == MPOL_PREFERRED && mask == 1;
    if (!thread_ok) fail("thread: policy %d mask %lx, expected preferred on node 0", mode, mask);
    return NULL;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    pid_t child = test_fork();
    if (child == 0) {
        test_waitsig();
        unsigned long mask;
        _exit(policy(NULL, &mask) == MPOL_DEFAULT ? 0 : 3);
    }
    if (set_policy(MPOL_INTERLEAVE | MPOL_F_STATIC_NODES, 1)) fail("set_mempolicy: %m");
    char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned long node0 = 1;
    if (p == MAP_FAILED || syscall(SYS_mbind, p + 4096, 2 * 4096, MPOL_BIND, &node0, 64, 0)) fail("mbind: %m");
    for (int i = 0; i < 4; i++) p[i * 4096] = (char)i;
    pthread_t th;
    pthread_create(&th, NULL, thread_main, NULL);
    while (!ready) usleep(1000);
    test_daemon();
    test_waitsig();
    unsigned long mask;
    int mode = policy(NULL, &mask);
    if (mode != (MPOL_INTERLEAVE | MPOL_F_STATIC_NODES) || mask != 1) fail("main thread: policy %#x mask %lx", mode, mask);
    const int want[4] = { MPOL_DEFAULT, MPOL_BIND, MPOL_BIND, MPOL_DEFAULT };
    for (int i = 0; i < 4; i++) {
        mode = policy(p + i * 4096, &mask);
        if (mode != want[i] || (want[i] == MPOL_BIND && mask != 1)) fail("page %d: policy %d mask %lx, expected %d", i, mode, mask, want[i]);
        if (p[i * 4096] != (char)i) fail("page %d lost its byte", i);
    }
    pthread_join(th, NULL);
    kill(child, SIGTERM);
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) fail("child: status %#x (3: it has its parent's policy)", st);
    return test_report();
}
