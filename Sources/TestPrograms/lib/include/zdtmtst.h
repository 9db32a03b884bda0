// The zdtm protocol, as every workload speaks it:
//   PROGRAM --pidfile=P --outfile=O [args]
// The program forks; the child (the daemon) sets up its state, writes its pid to P and
// releases the parent, which exits 0. On SIGTERM the daemon checks its state and writes
// "PASS" or "FAIL: reason" to O.
#ifndef ZDTMTST_H
#define ZDTMTST_H
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

extern volatile sig_atomic_t zt_stop;
extern int zt_argc;       // zt_argv[0] is the program, then the args other than --pidfile/--outfile
extern char **zt_argv;

// Parse options, daemonize. Returns in the daemon, with SIGTERM handled.
void test_init(int argc, char **argv);
// Set-up done: write the pidfile and let the parent exit.
void test_daemon(void);
// fork() for workloads with children: the child drops the launcher's ready pipe, which only
// the daemon itself may hold (the launcher waits for it to close).
pid_t test_fork(void);
// Wait (in sigsuspend) until SIGTERM arrives.
void test_waitsig(void);
static inline int test_stopped(void) { return zt_stop; }

void test_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Record a failure (the first is reported). Before test_daemon() it aborts set-up.
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int test_failed(void);
// Write O and return the exit code (0 on PASS).
int test_report(void);

// Deterministic patterns: fill and verify. verify returns the first bad byte offset or -1.
void datagen(void *buf, size_t len, uint64_t seed);
long datachk(const void *buf, size_t len, uint64_t seed);
uint64_t pattern_word(uint64_t seed, uint64_t index);
// datachk, and on a mismatch fail("WHAT: data differs at +OFF: expected X, got Y"). Returns 1 if bad.
int datachk_fail(const char *what, const void *buf, size_t len, uint64_t seed);
// Both ends of a TCP connection over loopback (AF_INET or AF_INET6): *c connected, *a accepted.
void tcp_loopback_pair(int family, int *c, int *a);
// A TCP socket's state (TCP_INFO's tcpi_state), or -1.
int tcp_state(int s);

#endif
