// Stopped tasks: a child stopped by SIGSTOP, and a two-threaded child stopped by SIGTSTP.
// After restore both are still stopped (state T, every thread), and after SIGCONT each one
// runs on and answers through its pipe. While stopped, no thread may run: every thread counts
// in a shared page, and the counts must not move across the dump and restore.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char state_of(const char *path) {
    char buf[512];
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] ? p[2] : '?';
}

// Every thread of `pid` is in state T; returns how many threads there are.
static int all_stopped(pid_t pid) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) { fail("opendir %s: %m", path); return 0; }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[96];
        snprintf(p, sizeof(p), "/proc/%d/task/%s/stat", pid, e->d_name);
        char s = state_of(p);
        if (s != 'T') fail("thread %s of %d is in state '%c', expected stopped (T)", e->d_name, pid, s);
        n++;
    }
    closedir(d);
    return n;
}

static int answer_fd;
// counts[2*i + t]: how far thread t of child i has run (shared with the parent).
static volatile unsigned long *counts;
static volatile unsigned long *my_count;
static void *spinner(void *arg) {
    volatile unsigned long *c = arg;
    // It blocks every signal, SIGTSTP included: the group stop must come from its leader,
    // and a restore that let it go first would let it run (the count moves) and, in
    // pthread_create's start, lose its mask.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) { (*c)++; usleep(1000); }
    return NULL;
}

static void child(int out, int threaded, int i) {
    answer_fd = out;
    my_count = &counts[2 * i];
    // Its own group, with the parent outside it in the session: SIGTSTP to an orphaned
    // process group would be discarded.
    setpgid(0, 0);
    if (threaded) {
        pthread_t t;
        pthread_create(&t, NULL, spinner, (void *)&counts[2 * i + 1]);
    }
    // Stopped only once it is set up (and has closed the launcher's ready pipe).
    char r = 'r';
    if (write(answer_fd, &r, 1) != 1) _exit(2);
    // Stopped here by the parent; after SIGCONT the loop goes on and answers.
    for (int i = 0;; i++) {
        usleep(10000);
        (*my_count)++;
        char c = 'a';
        if (i == 20 && write(answer_fd, &c, 1) != 1) _exit(2);
    }
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    counts = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (counts == MAP_FAILED) fail("mmap: %m");
    int p[2][2];
    pid_t c[2];
    const int sigs[2] = { SIGSTOP, SIGTSTP };
    for (int i = 0; i < 2; i++) {
        if (pipe(p[i])) fail("pipe: %m");
        c[i] = test_fork();
        if (c[i] == 0) { close(p[i][0]); child(p[i][1], i == 1, i); }
        setpgid(c[i], c[i]);
        close(p[i][1]);
        char r;
        if (read(p[i][0], &r, 1) != 1 || r != 'r') fail("child %d did not start", c[i]);
        kill(c[i], sigs[i]);
        int st;
        if (waitpid(c[i], &st, WUNTRACED) != c[i] || !WIFSTOPPED(st) || WSTOPSIG(st) != sigs[i])
            fail("child %d did not stop: status %#x", c[i], st);
    }
    unsigned long before[4];
    for (int k = 0; k < 4; k++) before[k] = counts[k];
    test_daemon();
    test_waitsig();
    for (int k = 0; k < 4; k++)
        if (counts[k] != before[k])
            fail("thread %d of child %d ran while stopped: count %lu -> %lu", k % 2, k / 2, before[k], counts[k]);
    for (int i = 0; i < 2; i++) {
        int n = all_stopped(c[i]);
        if (n != i + 1) fail("child %d has %d threads, expected %d", c[i], n, i + 1);
    }
    for (int i = 0; i < 2; i++) {
        kill(c[i], SIGCONT);
        char b;
        if (read(p[i][0], &b, 1) != 1 || b != 'a') fail("child %d did not run on after SIGCONT", c[i]);
        if (i == 1) {
            for (int w = 0; w < 200 && counts[3] == before[3]; w++) usleep(5000);
            if (counts[3] == before[3]) fail("the second thread of child %d did not run on after SIGCONT", c[i]);
        }
        kill(c[i], SIGKILL);
        waitpid(c[i], NULL, 0);
    }
    return test_report();
}
