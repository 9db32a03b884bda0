// Signal handlers (flags, masks, SA_ONSTACK), blocked pending signals with payloads, and the
// alternate signal stack survive.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int got_usr2, got_rt, rt_values[4], on_altstack, rt_code;
static char *altstack;
#define ALT_SIZE (64 * 1024)

static void h_usr2(int sig) { (void)sig; got_usr2++; }
static void h_rt(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (got_rt < 4) rt_values[got_rt] = si->si_value.sival_int;
    got_rt++;
    rt_code = si->si_code;
    char here;
    on_altstack = &here >= altstack && &here < altstack + ALT_SIZE;
}
static void h_hup(int sig) { (void)sig; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    altstack = malloc(ALT_SIZE);
    stack_t ss = { .ss_sp = altstack, .ss_size = ALT_SIZE, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL)) fail("sigaltstack: %m");

    struct sigaction sa = { 0 };
    sa.sa_handler = h_usr2;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGALRM);
    if (sigaction(SIGUSR2, &sa, NULL)) fail("sigaction USR2: %m");
    struct sigaction rt = { 0 };
    rt.sa_sigaction = h_rt;
    rt.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&rt.sa_mask);
    sigaddset(&rt.sa_mask, SIGUSR1);
    if (sigaction(SIGRTMIN + 2, &rt, NULL)) fail("sigaction RT: %m");
    struct sigaction hup = { 0 };
    hup.sa_handler = h_hup;
    hup.sa_flags = SA_NODEFER | SA_RESETHAND;
    if (sigaction(SIGHUP, &hup, NULL)) fail("sigaction HUP: %m");
    signal(SIGPIPE, SIG_IGN);

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGRTMIN + 2);
    sigset_t mask0;
    sigprocmask(SIG_BLOCK, &block, &mask0);
    sigprocmask(SIG_BLOCK, NULL, &mask0);
    raise(SIGUSR2);
    // Two queued instances: both payloads must survive, in order.
    union sigval v1 = { .sival_int = 0x5eed }, v2 = { .sival_int = 0x5eee };
    if (sigqueue(getpid(), SIGRTMIN + 2, v1) || sigqueue(getpid(), SIGRTMIN + 2, v2)) fail("sigqueue: %m");
    test_daemon();
    test_waitsig();

    sigset_t pend, mask1;
    sigprocmask(SIG_BLOCK, NULL, &mask1);
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&mask0, sig) != sigismember(&mask1, sig))
            fail("blocked mask: signal %d is %s, expected %s", sig, sigismember(&mask1, sig) ? "blocked" : "unblocked",
                 sigismember(&mask0, sig) ? "blocked" : "unblocked");
    sigpending(&pend);
    if (!sigismember(&pend, SIGUSR2)) fail("SIGUSR2 no longer pending");
    if (!sigismember(&pend, SIGRTMIN + 2)) fail("SIGRTMIN+2 no longer pending");
    struct sigaction cur;
    sigaction(SIGUSR2, NULL, &cur);
    if (cur.sa_handler != h_usr2 || !(cur.sa_flags & SA_RESTART) || !sigismember(&cur.sa_mask, SIGALRM))
        fail("SIGUSR2 action changed (handler %p flags %#x)", (void *)cur.sa_handler, cur.sa_flags);
    sigaction(SIGRTMIN + 2, NULL, &cur);
    if (cur.sa_sigaction != h_rt || !(cur.sa_flags & SA_SIGINFO) || !(cur.sa_flags & SA_ONSTACK) || !sigismember(&cur.sa_mask, SIGUSR1))
        fail("SIGRTMIN+2 action changed (flags %#x)", cur.sa_flags);
    sigaction(SIGHUP, NULL, &cur);
    if (cur.sa_handler != h_hup || !(cur.sa_flags & SA_NODEFER) || !(cur.sa_flags & SA_RESETHAND))
        fail("SIGHUP action changed (flags %#x)", cur.sa_flags);
    sigaction(SIGPIPE, NULL, &cur);
    if (cur.sa_handler != SIG_IGN) fail("SIGPIPE is no longer ignored");
    stack_t now;
    sigaltstack(NULL, &now);
    if (now.ss_sp != altstack || now.ss_size != ALT_SIZE || now.ss_flags != 0)
        fail("sigaltstack changed: sp %p size %zu flags %d", now.ss_sp, now.ss_size, now.ss_flags);

    sigprocmask(SIG_UNBLOCK, &block, NULL);
    if (got_usr2 != 1) fail("SIGUSR2 handler ran %d times, expected 1", got_usr2);
    if (got_rt != 2) fail("SIGRTMIN+2 handler ran %d times, expected 2 (two queued)", got_rt);
    else if (rt_values[0] != 0x5eed || rt_values[1] != 0x5eee)
        fail("SIGRTMIN+2 payloads %#x, %#x, expected 0x5eed, 0x5eee", rt_values[0], rt_values[1]);
    if (got_rt && rt_code != SI_QUEUE) fail("SIGRTMIN+2 si_code %d, expected SI_QUEUE (%d)", rt_code, SI_QUEUE);
    if (!on_altstack) fail("RT handler did not run on the alternate stack");
    return test_report();
}
