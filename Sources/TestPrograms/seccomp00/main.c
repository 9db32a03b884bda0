// Seccomp strict mode comes back in the one thread that had it (as CRIU's seccomp_strict
// does it, strict mode lives in a thread: it allows only read, write, exit and sigreturn).
// The strict thread also has no_new_privs, the main thread neither. After restore the
// strict thread, blocked in read() on a pipe, still answers, and a forbidden call still
// kills it (not the process) while the main thread's syscalls still work.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int ask[2], answer[2];
static volatile pid_t strict_tid;

static void *strict_thread(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    strict_tid = gettid();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) { fail("no_new_privs: %m"); return NULL; }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0)) { fail("strict mode: %m"); return NULL; }
    // From here only raw read/write/exit.
    char c = 'r';
    syscall(SYS_write, answer[1], &c, 1);
    for (;;) {
        if (syscall(SYS_read, ask[0], &c, 1) != 1) syscall(SYS_exit, 3);
        if (c == 'k') syscall(SYS_getpid);  // not allowed: the kernel kills this thread
        c = c + 1;
        syscall(SYS_write, answer[1], &c, 1);
    }
}

// "Seccomp:" and "NoNewPrivs:" of a thread, from /proc.
static void thread_status(pid_t tid, int *mode, int *nnp) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
    *mode = *nnp = -1;
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof(line), f)) {
        sscanf(line, "Seccomp: %d", mode);
        sscanf(line, "NoNewPrivs: %d", nnp);
    }
    fclose(f);
}

static int round_trip(char c) {
    char got = 0;
    if (write(ask[1], &c, 1) != 1) return -1;
    if (read(answer[0], &got, 1) != 1) return -1;
    return got;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (pipe(ask) || pipe(answer)) fail("pipe: %m");
    pthread_t th;
    if (pthread_create(&th, NULL, strict_thread, NULL)) fail("pthread_create");
    char c;
    if (read(answer[0], &c, 1) != 1 || c != 'r') fail("strict thread did not start");
    if (round_trip('a') != 'b') fail("strict thread does not answer before C/R");
    int mode, nnp;
    thread_status(strict_tid, &mode, &nnp);
    if (mode != SECCOMP_MODE_STRICT || nnp != 1) fail("before C/R: strict thread has Seccomp %d NoNewPrivs %d", mode, nnp);
    test_daemon();
    test_waitsig();

    thread_status(strict_tid, &mode, &nnp);
    if (mode != SECCOMP_MODE_STRICT) fail("strict thread: Seccomp %d, expected %d", mode, SECCOMP_MODE_STRICT);
    if (nnp != 1) fail("strict thread: NoNewPrivs %d, expected 1", nnp);
    thread_status(gettid(), &mode, &nnp);
    if (mode != 0 || nnp != 0) fail("main thread: Seccomp %d NoNewPrivs %d, expected 0 0", mode, nnp);
    if (round_trip('x') != 'y') fail("strict thread does not answer after C/R");
    // A forbidden call must still kill the strict thread, and only it.
    c = 'k';
    if (write(ask[1], &c, 1) != 1) fail("write: %m");
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d", strict_tid);
    for (int i = 0; i < 200 && access(path, F_OK) == 0; i++) usleep(10000);
    if (access(path, F_OK) == 0) fail("strict thread survived a forbidden syscall: strict mode is gone");
    if (getppid() < 0) fail("main thread cannot make syscalls");
    return test_report();
}
