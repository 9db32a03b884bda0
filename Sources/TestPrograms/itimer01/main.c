// A periodic ITIMER_REAL that fired while SIGALRM is blocked: the kernel re-arms it only
// when that SIGALRM is taken, so until then it shows no time left. After restore the SIGALRM
// is still pending and, once taken, the timer ticks on every period (a restore that took "no
// time left" for "disarmed" would leave it dead after one signal).
#include "zdtmtst.h"
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks = 0;
static void on_alrm(int sig) { (void)sig; ticks++; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct sigaction sa = { .sa_handler = on_alrm };
    sigaction(SIGALRM, &sa, NULL);
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    sigprocmask(SIG_BLOCK, &alrm, NULL);
    struct itimerval v = { { 0, 50000 }, { 0, 10000 } };
    if (setitimer(ITIMER_REAL, &v, NULL)) fail("setitimer: %m");
    struct timespec nap = { 0, 100 * 1000 * 1000 };
    nanosleep(&nap, NULL);
    struct itimerval cur;
    getitimer(ITIMER_REAL, &cur);
    if (cur.it_value.tv_sec || cur.it_value.tv_usec) fail("the fired timer shows %ld us left before the dump, expected none", (long)cur.it_value.tv_usec);
    test_daemon();
    test_waitsig();
    sigset_t pend;
    sigpending(&pend);
    if (!sigismember(&pend, SIGALRM)) fail("SIGALRM is no longer pending");
    getitimer(ITIMER_REAL, &cur);
    if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_usec != 50000) fail("interval %ld.%06ld s, expected 0.05", (long)cur.it_interval.tv_sec, (long)cur.it_interval.tv_usec);
    sigprocmask(SIG_UNBLOCK, &alrm, NULL);
    // 0.5 s is ten periods: taken once, it must tick again (allow for a loaded machine).
    for (int i = 0; i < 50 && ticks < 3; i++) nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    if (ticks < 3) fail("the timer ticked %d time(s) in 0.5 s after SIGALRM was unblocked: not re-armed", (int)ticks);
    return test_report();
}
