#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

volatile sig_atomic_t zt_stop;
int zt_argc;
char **zt_argv;

static const char *pidfile, *outfile;
static int ready_fd = -1;
static char first_failure[1024];
static int failures;
static int daemonized;

static void on_term(int sig) { (void)sig; zt_stop = 1; }

static void write_out(const char *line) {
    int fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    dprintf(fd, "%s\n", line);
    close(fd);
}

void test_msg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

void fail(const char *fmt, ...) {
    char buf[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    test_msg("FAIL: %s", buf);
    if (failures++ == 0) snprintf(first_failure, sizeof(first_failure), "FAIL: %s", buf);
    if (!daemonized) {
        // Set-up failed: report it and let the parent exit non-zero.
        write_out(first_failure);
        exit(1);
    }
}

int test_failed(void) { return failures; }

int test_report(void) {
    if (failures) { write_out(first_failure); return 1; }
    write_out("PASS");
    return 0;
}

static void usage(const char *prog) {
    fprintf(stderr, "usage: %s --pidfile=FILE --outfile=FILE [args]\n", prog);
    exit(2);
}

void test_init(int argc, char **argv) {
    zt_argv = calloc(argc + 1, sizeof(char *));
    zt_argv[zt_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--pidfile=", 10)) pidfile = argv[i] + 10;
        else if (!strncmp(argv[i], "--outfile=", 10)) outfile = argv[i] + 10;
        else zt_argv[zt_argc++] = argv[i];
    }
    if (!pidfile || !outfile || pidfile[0] != '/' || outfile[0] != '/') usage(argv[0]);

    int p[2];
    if (pipe2(p, O_CLOEXEC)) { perror("pipe"); exit(1); }
    pid_t child = fork();
    if (child < 0) { perror("fork"); exit(1); }
    if (child > 0) {
        // Parent: wait for "ready" (one byte) or for the child to give up.
        close(p[1]);
        // The child closes its end before publishing the pidfile, so that the
        // launcher never records this pipe in the child's state. EOF then
        // means "ready" once the pidfile is there, or "gave up" once the
        // child is dead.
        char c;
        while (read(p[0], &c, 1) > 0)
            ;
        for (;;) {
            int st;
            if (access(pidfile, F_OK) == 0) exit(0);
            if (waitpid(child, &st, WNOHANG) == child) exit(1);
            usleep(1000);
        }
    }
    close(p[0]);
    ready_fd = p[1];
    setsid();
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    if (null > 0) close(null);
    char log[4096];
    snprintf(log, sizeof(log), "%s.log", outfile);
    int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (lfd >= 0) { dup2(lfd, 1); dup2(lfd, 2); if (lfd > 2) close(lfd); }
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct sigaction sa = { .sa_handler = on_term };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
}

pid_t test_fork(void) {
    pid_t pid = fork();
    if (pid == 0 && ready_fd >= 0) {
        close(ready_fd);
        ready_fd = -1;
    }
    return pid;
}

void test_daemon(void) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", pidfile);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("cannot create %s: %m", tmp);
    dprintf(fd, "%d\n", getpid());
    close(fd);
    close(ready_fd);
    ready_fd = -1;
    if (rename(tmp, pidfile)) fail("cannot rename %s: %m", tmp);
    daemonized = 1;
}

void test_waitsig(void) {
    // SIGTERM stays blocked between the check and sigsuspend: a signal landing in between
    // would otherwise be missed and the wait would never end.
    sigset_t term, old, wait;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &old);
    wait = old;
    sigdelset(&wait, SIGTERM);
    while (!zt_stop) sigsuspend(&wait);
    sigprocmask(SIG_SETMASK, &old, NULL);
}

uint64_t pattern_word(uint64_t seed, uint64_t i) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + i * 0xbf58476d1ce4e5b9ULL + 0x94d049bb133111ebULL;
    x ^= x >> 31;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 29;
    return x;
}

void datagen(void *buf, size_t len, uint64_t seed) {
    uint64_t *w = buf;
    size_t n = len / 8;
    for (size_t i = 0; i < n; i++) w[i] = pattern_word(seed, i);
    for (size_t i = n * 8; i < len; i++) ((uint8_t *)buf)[i] = (uint8_t)pattern_word(seed, i);
}

long datachk(const void *buf, size_t len, uint64_t seed) {
    // Word compare first: the common (matching) case must be fast for 256 MiB.
    const uint64_t *w = buf;
    size_t n = len / 8;
    for (size_t i = 0; i < n; i++)
        if (w[i] != pattern_word(seed, i)) return (long)(i * 8);
    for (size_t i = n * 8; i < len; i++)
        if (((const uint8_t *)buf)[i] != (uint8_t)pattern_word(seed, i)) return (long)i;
    return -1;
}

int datachk_fail(const char *what, const void *buf, size_t len, uint64_t seed) {
    long bad = datachk(buf, len, seed);
    if (bad < 0) return 0;
    size_t w = (size_t)bad / 8 * 8;
    if (w + 8 <= len) {
        uint64_t got;
        memcpy(&got, (const uint8_t *)buf + w, 8);
        fail("%s: data differs at +%#lx (of %#zx): expected %#llx, got %#llx", what, bad, len,
             (unsigned long long)pattern_word(seed, w / 8), (unsigned long long)got);
    } else {
        fail("%s: data differs at +%#lx (of %#zx): expected byte %#x, got %#x", what, bad, len,
             (uint8_t)pattern_word(seed, bad), ((const uint8_t *)buf)[bad]);
    }
    return 1;
}

void tcp_loopback_pair(int fam, int *c, int *a) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (fam == AF_INET) {
        struct sockaddr_in *s4 = (void *)&ss;
        s4->sin_family = AF_INET; s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK); len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (void *)&ss;
        s6->sin6_family = AF_INET6; s6->sin6_addr = in6addr_loopback; len = sizeof(*s6);
    }
    int l = socket(fam, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (void *)&ss, len) || listen(l, 1)) fail("listen: %m");
    getsockname(l, (void *)&ss, &len);
    *c = socket(fam, SOCK_STREAM, 0);
    if (connect(*c, (void *)&ss, len)) fail("connect: %m");
    *a = accept(l, NULL, NULL);
    if (*a < 0) fail("accept: %m");
    close(l);
}

int tcp_state(int s) {
    struct tcp_info ti;
    socklen_t l = sizeof(ti);
    if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &l)) return -1;
    return ti.tcpi_state;
}
