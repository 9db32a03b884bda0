// Seccomp BPF filters come back per thread, in order, and inherited:
// - the main thread installs F1 (syslog -> EPERM-like errno 101) with no_new_privs, before
//   anything else, so every thread and the child inherit it;
// - thread A adds F2 (acct -> errno 102, SECCOMP_FILTER_FLAG_LOG);
// - thread B adds F3 (syslog -> errno 103: the newer filter's errno wins, so the order of
//   the chain shows) and F4 (prctl -> errno 104, a call cryo itself injects after seccomp);
// - a forked child adds F5 (setdomainname -> errno 105) with TSYNC to its two threads.
// Each thread reads its own answers and /proc counts before and after; they must match.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int install(int nr, int err, unsigned flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = { .len = 4, .filter = f };
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &p);
}

// What this thread sees: the errno of each probed call, its filter count and mode.
static void observe(char *out, size_t n) {
    int e[4];
    long nrs[4] = { SYS_syslog, SYS_acct, SYS_prctl, SYS_setdomainname };
    for (int i = 0; i < 4; i++) {
        errno = 0;
        // Arguments that make each call fail harmlessly if a filter does not stop it.
        long r = i == 0 ? syscall(nrs[i], 3, NULL, -1) : i == 1 ? syscall(nrs[i], "/nonexistent/x") :
                 i == 2 ? syscall(nrs[i], -1, 0, 0, 0, 0) : syscall(nrs[i], NULL, -1);
        // Only our filters' errnos count: unfiltered, each call fails with its own.
        e[i] = r < 0 && errno >= 101 && errno <= 105 ? errno : 0;
    }
    char path[64], line[256];
    int mode = -1, count = -1, nnp = -1;
    snprintf(path, sizeof(path), "/proc/thread-self/status");
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f)) {
        sscanf(line, "Seccomp: %d", &mode);
        sscanf(line, "Seccomp_filters: %d", &count);
        sscanf(line, "NoNewPrivs: %d", &nnp);
    }
    if (f) fclose(f);
    snprintf(out, n, "syslog %d acct %d prctl %d setdomainname %d; mode %d, %d filters, nnp %d", e[0], e[1], e[2], e[3], mode, count, nnp);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;  // 0 set-up, 1 ready, 2 asked after C/R
static int started;

struct worker { const char *name; char before[256], after[256]; int done; void (*setup)(void); };

static void setup_a(void) { if (install(SYS_acct, 102, SECCOMP_FILTER_FLAG_LOG)) fail("F2: %m"); }
static void setup_b(void) { if (install(SYS_syslog, 103, 0) || install(SYS_prctl, 104, 0)) fail("F3/F4: %m"); }
static void setup_none(void) {}

static void *work(void *arg) {
    struct worker *w = arg;
    w->setup();
    observe(w->before, sizeof(w->before));
    pthread_mutex_lock(&mu);
    started++;
    pthread_cond_broadcast(&cv);
    while (phase < 2) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    observe(w->after, sizeof(w->after));
    pthread_mutex_lock(&mu);
    w->done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void expect(const char *who, const char *got, const char *want) {
    if (strcmp(got, want)) fail("%s: %s, expected %s", who, got, want);
}

// The child: two threads sharing [F1, F5] through TSYNC. It reports on request.
static int child_main(int req, int rep) {
    struct worker t = { .name = "child thread", .setup = setup_none };
    pthread_t th;
    if (pthread_create(&th, NULL, work, &t)) return 1;
    pthread_mutex_lock(&mu);
    while (started < 1) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (install(SYS_setdomainname, 105, SECCOMP_FILTER_FLAG_TSYNC)) return 2;
    char before[256], after[256], c;
    observe(before, sizeof(before));
    if (write(rep, "r", 1) != 1) return 3;
    if (read(req, &c, 1) != 1) return 4;
    observe(after, sizeof(after));
    pthread_mutex_lock(&mu);
    phase = 2;
    pthread_cond_broadcast(&cv);
    while (!t.done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    const char *want = "syslog 101 acct 0 prctl 0 setdomainname 105; mode 2, 2 filters, nnp 1";
    char msg[600];
    snprintf(msg, sizeof(msg), "%s|%s|%s", after, t.after, before);
    if (write(rep, msg, strlen(msg)) < 0) return 5;
    return strcmp(after, want) || strcmp(t.after, want) ? 6 : 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) fail("no_new_privs: %m");
    if (install(SYS_syslog, 101, 0)) fail("F1: %m");
    int req[2], rep[2];
    if (pipe(req) || pipe(rep)) fail("pipe: %m");
    pid_t child = test_fork();
    if (child == 0) _exit(child_main(req[0], rep[1]));
    struct worker a = { .name = "thread A", .setup = setup_a }, b = { .name = "thread B", .setup = setup_b };
    pthread_t ta, tb;
    if (pthread_create(&ta, NULL, work, &a) || pthread_create(&tb, NULL, work, &b)) fail("pthread_create");
    pthread_mutex_lock(&mu);
    while (started < 2) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    char c, main_before[256], main_after[256];
    if (read(rep[0], &c, 1) != 1) fail("child did not start");
    observe(main_before, sizeof(main_before));
    const char *want_main = "syslog 101 acct 0 prctl 0 setdomainname 0; mode 2, 1 filters, nnp 1";
    const char *want_a = "syslog 101 acct 102 prctl 0 setdomainname 0; mode 2, 2 filters, nnp 1";
    const char *want_b = "syslog 103 acct 0 prctl 104 setdomainname 0; mode 2, 3 filters, nnp 1";
    expect("main before", main_before, want_main);
    expect("thread A before", a.before, want_a);
    expect("thread B before", b.before, want_b);
    test_daemon();
    test_waitsig();

    observe(main_after, sizeof(main_after));
    expect("main thread", main_after, want_main);
    pthread_mutex_lock(&mu);
    phase = 2;
    pthread_cond_broadcast(&cv);
    while (!a.done || !b.done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    expect("thread A", a.after, want_a);
    expect("thread B", b.after, want_b);
    if (write(req[1], "c", 1) != 1) fail("ask child: %m");
    char msg[600] = "";
    ssize_t n = read(rep[0], msg, sizeof(msg) - 1);
    if (n > 0) msg[n] = 0;
    int st = 0;
    waitpid(child, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child (after|its thread after|before): %s; status %#x", msg, st);
    return test_report();
}
