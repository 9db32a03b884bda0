// A signalfd keeps its signal set: it reads the signals in it and no others.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    sigset_t blk, mask;
    sigemptyset(&blk);
    sigaddset(&blk, SIGUSR1);
    sigaddset(&blk, SIGUSR2);
    sigprocmask(SIG_BLOCK, &blk, NULL);
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGWINCH);
    int fd = signalfd(-1, &mask, SFD_NONBLOCK);
    if (fd < 0) fail("signalfd: %m");
    test_daemon();
    test_waitsig();
    if (!(fcntl(fd, F_GETFL) & O_NONBLOCK)) fail("signalfd lost O_NONBLOCK");
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof(si)) != -1 || errno != EAGAIN) fail("a signal was waiting before any was sent");
    raise(SIGUSR2);
    if (read(fd, &si, sizeof(si)) != -1 || errno != EAGAIN) fail("signalfd reads SIGUSR2, which is not in its set");
    raise(SIGUSR1);
    if (read(fd, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != SIGUSR1) fail("signalfd does not read SIGUSR1 (%m)");
    return test_report();
}
