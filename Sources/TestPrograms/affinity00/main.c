// CPU affinity (taskset, MPI rank pinning): the main thread pinned to the last online CPU, a
// second thread to the first, and a child forked before the pinning that may run anywhere.
// After restore each has the same mask (the child: every online CPU, though cryo forks it from
// its restored, pinned parent).
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static cpu_set_t online_set(void) {
    cpu_set_t s;
    CPU_ZERO(&s);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < n; i++) CPU_SET(i, &s);
    return s;
}

static volatile int ready;
static int first_cpu, last_cpu;

static void *thread_main(void *arg) {
    (void)arg;
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(first_cpu, &s);
    if (sched_setaffinity(0, sizeof(s), &s)) fail("thread: sched_setaffinity: %m");
    ready = 1;
    while (!test_stopped()) usleep(10000);
    cpu_set_t got;
    if (sched_getaffinity(0, sizeof(got), &got) || !CPU_EQUAL(&got, &s)) fail("thread: affinity changed (%d CPUs, expected only CPU %d)", CPU_COUNT(&got), first_cpu);
    return NULL;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    cpu_set_t all = online_set();
    first_cpu = 0;
    last_cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
    pid_t child = test_fork();
    if (child == 0) {
        test_waitsig();
        cpu_set_t got;
        _exit(sched_getaffinity(0, sizeof(got), &got) == 0 && CPU_EQUAL(&got, &all) ? 0 : 3);
    }
    cpu_set_t mine;
    CPU_ZERO(&mine);
    CPU_SET(last_cpu, &mine);
    if (sched_setaffinity(0, sizeof(mine), &mine)) fail("sched_setaffinity: %m");
    pthread_t th;
    pthread_create(&th, NULL, thread_main, NULL);
    while (!ready) usleep(1000);
    test_daemon();
    test_waitsig();
    cpu_set_t got;
    if (sched_getaffinity(0, sizeof(got), &got) || !CPU_EQUAL(&got, &mine)) fail("main thread: affinity changed (%d CPUs, expected only CPU %d)", CPU_COUNT(&got), last_cpu);
    pthread_join(th, NULL);
    kill(child, SIGTERM);
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) fail("child: status %#x (3: not every online CPU)", st);
    return test_report();
}
