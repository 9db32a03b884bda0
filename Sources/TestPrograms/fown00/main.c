// F_SETOWN owners and F_SETSIG signals: a pipe owned by the process, with SIGUSR1 as its
// signal and O_ASYNC; a socketpair owned by the process group; an eventfd-less signal only
// (F_SETSIG without an owner); and a pipe whose owner was set under euid 65534, so the
// kernel's owner uids are (0, 65534). After restore each still reads the same, and writing
// to the owned pipe signals the owner with SIGUSR1 carrying the fd.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef F_GETOWNER_UIDS
#define F_GETOWNER_UIDS 17
#endif

static volatile sig_atomic_t got_fd = -1, got_count = 0;
static void on_usr1(int sig, siginfo_t *si, void *uc) { (void)sig; (void)uc; got_fd = si->si_fd; got_count++; }

static void check_owner(int fd, int type, pid_t pid, int sig, const char *what) {
    struct f_owner_ex o;
    if (fcntl(fd, F_GETOWN_EX, &o)) { fail("%s: F_GETOWN_EX: %m", what); return; }
    if (o.type != type || o.pid != pid) fail("%s: owner (type %d, %d), expected (type %d, %d)", what, o.type, o.pid, type, pid);
    int s = fcntl(fd, F_GETSIG);
    if (s != sig) fail("%s: F_GETSIG %d, expected %d", what, s, sig);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct sigaction sa = { .sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO };
    sigaction(SIGUSR1, &sa, NULL);

    int p[2], s[2], q[2], u[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, s) || pipe(q) || pipe(u)) fail("pipe/socketpair: %m");
    struct f_owner_ex me = { F_OWNER_PID, getpid() }, grp = { F_OWNER_PGRP, getpgrp() };
    if (fcntl(p[0], F_SETOWN_EX, &me) || fcntl(p[0], F_SETSIG, SIGUSR1)) fail("pipe owner: %m");
    if (fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC | O_NONBLOCK)) fail("O_ASYNC: %m");
    if (fcntl(s[1], F_SETOWN_EX, &grp)) fail("socket owner: %m");
    if (fcntl(q[0], F_SETSIG, SIGUSR2)) fail("signal only: %m");
    // The owner's uids are the caller's at F_SETOWN: set under euid 65534.
    if (setresuid(-1, 65534, -1)) fail("seteuid: %m");
    if (fcntl(u[0], F_SETOWN_EX, &me)) fail("owner as 65534: %m");
    if (setresuid(-1, 0, -1)) fail("seteuid back: %m");
    unsigned int uids[2] = { 1, 1 };
    if (fcntl(u[0], F_GETOWNER_UIDS, uids)) fail("F_GETOWNER_UIDS: %m");
    unsigned int want0 = uids[0], want1 = uids[1];
    if (want1 != 65534) fail("owner euid %u before the dump, expected 65534", want1);

    test_daemon();
    test_waitsig();

    check_owner(p[0], F_OWNER_PID, getpid(), SIGUSR1, "pipe");
    check_owner(s[1], F_OWNER_PGRP, getpgrp(), 0, "socket");
    check_owner(q[0], 0, 0, SIGUSR2, "signal-only pipe");
    check_owner(u[0], F_OWNER_PID, getpid(), 0, "pipe owned as 65534");
    if (!(fcntl(p[0], F_GETFL) & O_ASYNC)) fail("pipe lost O_ASYNC");
    uids[0] = uids[1] = 1;
    if (fcntl(u[0], F_GETOWNER_UIDS, uids)) fail("F_GETOWNER_UIDS after restore: %m");
    else if (uids[0] != want0 || uids[1] != want1) fail("owner uids (%u, %u), expected (%u, %u)", uids[0], uids[1], want0, want1);

    // The owned pipe still signals: SIGUSR1 with si_fd of the read end.
    if (write(p[1], "x", 1) != 1) fail("write: %m");
    for (int i = 0; i < 200 && got_count == 0; i++) usleep(5000);
    if (got_count == 0) fail("no SIGUSR1 after a write to the owned pipe");
    else if (got_fd != p[0]) fail("SIGUSR1 names fd %d, expected %d", (int)got_fd, p[0]);
    return test_report();
}
