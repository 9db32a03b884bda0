// Credentials per thread, in the order restore has to rebuild them:
// - the main thread becomes uid/gid 1000 keeping capabilities (SECBIT_KEEP_CAPS), raises an
//   ambient capability after the uid change, then locks ambient raising
//   (SECBIT_NO_CAP_AMBIENT_RAISE | _LOCKED) and drops CAP_SETPCAP, so nothing of this can be
//   set again in the order a task would naturally do it; CAP_SYS_BOOT and CAP_MKNOD leave
//   the bounding set;
// - a second thread keeps uid 0 but has its own gid, securebits (NOROOT, locked), a smaller
//   bounding set, CAP_CHOWN dropped and no_new_privs.
// Each thread compares its /proc/thread-self/status credential lines and PR_GET_SECUREBITS
// before and after.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BIT(c) (1ULL << (c))

static int capset_self(unsigned long long eff, unsigned long long prm, unsigned long long inh) {
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = {
        { (unsigned)eff, (unsigned)prm, (unsigned)inh },
        { (unsigned)(eff >> 32), (unsigned)(prm >> 32), (unsigned)(inh >> 32) },
    };
    return syscall(SYS_capset, &h, d);
}

static void snapshot(char *out, size_t n) {
    FILE *f = fopen("/proc/thread-self/status", "r");
    char line[256];
    size_t used = 0;
    out[0] = 0;
    while (f && fgets(line, sizeof(line), f)) {
        static const char *keys[] = { "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:", "NoNewPrivs:", "Seccomp:" };
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            if (!strncmp(line, keys[k], strlen(keys[k])) && used + strlen(line) < n) { strcpy(out + used, line); used += strlen(line); }
    }
    if (f) fclose(f);
    snprintf(out + used, n - used, "securebits: %#x\n", prctl(PR_GET_SECUREBITS));
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready, asked, done;
static char t_before[2048], t_after[2048];

static void *second(void *arg) {
    (void)arg;
    // Raw syscalls: glibc would apply set*id and capset-like changes to every thread.
    if (syscall(SYS_setresgid, 3000, 3000, 3000)) fail("thread setresgid: %m");
    if (prctl(PR_CAPBSET_DROP, CAP_AUDIT_WRITE, 0, 0, 0)) fail("thread bounding drop: %m");
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0)) fail("thread securebits: %m");
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d)) fail("capget: %m");
    d[0].effective &= ~BIT(CAP_CHOWN); d[0].permitted &= ~BIT(CAP_CHOWN);
    if (syscall(SYS_capset, &h, d)) fail("thread capset: %m");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) fail("thread no_new_privs: %m");
    snapshot(t_before, sizeof(t_before));
    pthread_mutex_lock(&mu);
    ready = 1;
    pthread_cond_broadcast(&cv);
    while (!asked) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    snapshot(t_after, sizeof(t_after));
    pthread_mutex_lock(&mu);
    done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    pthread_t th;
    if (pthread_create(&th, NULL, second, NULL)) fail("pthread_create");
    pthread_mutex_lock(&mu);
    while (!ready) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);

    unsigned long long keep = BIT(CAP_DAC_OVERRIDE) | BIT(CAP_NET_BIND_SERVICE);
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0) || prctl(PR_CAPBSET_DROP, CAP_MKNOD, 0, 0, 0)) fail("bounding drop: %m");
    if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS, 0, 0, 0)) fail("KEEP_CAPS: %m");
    if (syscall(SYS_setresgid, 1000, 1000, 1000) || syscall(SYS_setresuid, 1000, 1000, 1000)) fail("setresuid: %m");
    // The uid change cleared effective and ambient; KEEP_CAPS kept permitted.
    if (capset_self(keep | BIT(CAP_SETPCAP), keep | BIT(CAP_SETPCAP), keep)) fail("capset: %m");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0)) fail("ambient raise: %m");
    if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0))
        fail("securebits: %m");
    if (capset_self(BIT(CAP_DAC_OVERRIDE), keep, keep)) fail("final capset: %m");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_OVERRIDE, 0, 0) == 0) fail("ambient raising is not locked");

    char m_before[2048], m_after[2048];
    snapshot(m_before, sizeof(m_before));
    test_msg("main:\n%s\nthread:\n%s", m_before, t_before);
    test_daemon();
    test_waitsig();

    snapshot(m_after, sizeof(m_after));
    pthread_mutex_lock(&mu);
    asked = 1;
    pthread_cond_broadcast(&cv);
    while (!done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (strcmp(m_before, m_after)) fail("main thread: before\n%safter\n%s", m_before, m_after);
    if (strcmp(t_before, t_after)) fail("second thread: before\n%safter\n%s", t_before, t_after);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_OVERRIDE, 0, 0) == 0) fail("ambient raising is no longer locked");
    return test_report();
}
