// File locks of every kind survive C/R, held by the right owner, and tasks waiting for them
// still wait: a flock (LOCK_EX), POSIX write and read ranges, an OFD write lock on a
// description a child shares, and a read lease on a description every child inherits. One
// waiter per lock (flock, F_SETLKW, F_OFD_SETLKW) is blocked in the kernel at the dump.
// After SIGTERM: no waiter got its lock; a helper forked now finds every lock held (a
// non-blocking flock fails, F_GETLK and F_OFD_GETLK show the owner and range); each release
// lets its own waiter through; the lease is still this process's and still breaks.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#define FLOCK_FILE "lock00.flock"
#define POSIX_FILE "lock00.posix"
#define OFD_FILE "lock00.ofd"
#define LEASE_FILE "lock00.lease"

static int report;  // write end: a waiter writes its letter once it holds its lock

static int setlk(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
    return fcntl(fd, cmd, &fl);
}

// Blocks until it holds its lock, then says so and exits.
static pid_t waiter(char which, const char *path) {
    pid_t pid = test_fork();
    if (pid) return pid;
    int fd = open(path, O_RDWR);
    if (fd < 0) _exit(10);
    int r;
    do {
        if (which == 'f') r = flock(fd, LOCK_EX);
        else if (which == 'p') r = setlk(fd, F_SETLKW, F_WRLCK, 15, 1);
        else r = setlk(fd, F_OFD_SETLKW, F_WRLCK, 0, 1);
    } while (r < 0 && errno == EINTR);
    if (r < 0) _exit(11);
    _exit(write(report, &which, 1) == 1 ? 0 : 12);
}

static int checkHeld(pid_t owner) {
    int f = open(FLOCK_FILE, O_RDWR), p = open(POSIX_FILE, O_RDWR), o = open(OFD_FILE, O_RDWR);
    if (f < 0 || p < 0 || o < 0) return 20;
    if (flock(f, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK) return 21;
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl(p, F_GETLK, &fl) || fl.l_type != F_WRLCK || fl.l_pid != owner || fl.l_start != 10 || fl.l_len != 10) return 22;
    fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 50, .l_len = 0 };
    if (fcntl(p, F_GETLK, &fl) || fl.l_type != F_RDLCK || fl.l_pid != owner || fl.l_start != 100 || fl.l_len != 0) return 23;
    fl = (struct flock){ .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl(p, F_GETLK, &fl) || fl.l_type != F_WRLCK || fl.l_start != 10) return 24;  // a read lock meets the write range
    fl = (struct flock){ .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl(o, F_OFD_GETLK, &fl) || fl.l_type != F_WRLCK || fl.l_pid != -1 || fl.l_start != 0 || fl.l_len != 0) return 25;
    return 0;
}

// The waiter's letter within 5 s, or 0.
static char nextGranted(int r, int ms) {
    struct pollfd p = { .fd = r, .events = POLLIN };
    char c = 0;
    if (poll(&p, 1, ms) == 1 && read(r, &c, 1) != 1) c = 0;
    return c;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    signal(SIGIO, SIG_IGN);  // the lease break at the end notifies us
    int pipefd[2];
    if (pipe2(pipefd, O_NONBLOCK)) fail("pipe: %m");
    report = pipefd[1];
    int f = open(FLOCK_FILE, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int p = open(POSIX_FILE, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int o = open(OFD_FILE, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int l0 = open(LEASE_FILE, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (f < 0 || p < 0 || o < 0 || l0 < 0) fail("open: %m");
    close(l0);  // a read lease needs no writer anywhere
    int l = open(LEASE_FILE, O_RDONLY);
    if (flock(f, LOCK_EX)) fail("flock: %m");
    if (setlk(p, F_SETLK, F_WRLCK, 10, 10) || setlk(p, F_SETLK, F_RDLCK, 100, 0)) fail("F_SETLK: %m");
    if (setlk(o, F_OFD_SETLK, F_WRLCK, 0, 0)) fail("F_OFD_SETLK: %m");
    if (fcntl(l, F_SETLEASE, F_RDLCK)) fail("F_SETLEASE: %m");
    pid_t wf = waiter('f', FLOCK_FILE), wp = waiter('p', POSIX_FILE), wo = waiter('o', OFD_FILE);
    usleep(100000);  // let them block (one still running at the dump blocks after restore)
    test_daemon();
    test_waitsig();

    if (nextGranted(pipefd[0], 0)) fail("a waiter got its lock across C/R: a lock was lost");
    pid_t me = getpid(), h = fork();
    if (h == 0) _exit(checkHeld(me));
    int st;
    if (waitpid(h, &st, 0) != h || !WIFEXITED(st) || WEXITSTATUS(st))
        fail("helper: a lock is not held as it was (verdict %d: 21 flock, 22/23/24 POSIX, 25 OFD)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    if (fcntl(l, F_GETLEASE) != F_RDLCK) fail("F_GETLEASE is %d, not F_RDLCK", fcntl(l, F_GETLEASE));
    if (fcntl(l, F_GETOWN) != me) fail("the lease's SIGIO owner is %d, not %d", fcntl(l, F_GETOWN), me);

    // Each release lets its own waiter through, and only that one.
    struct { int fd; char which; pid_t pid; } rel[] = { { f, 'f', wf }, { p, 'p', wp }, { o, 'o', wo } };
    for (int i = 0; i < 3; i++) {
        if (rel[i].which == 'f') flock(f, LOCK_UN);
        else if (rel[i].which == 'p') setlk(p, F_SETLK, F_UNLCK, 0, 0);
        else setlk(o, F_OFD_SETLK, F_UNLCK, 0, 0);
        char c = nextGranted(pipefd[0], 5000);
        if (c != rel[i].which) fail("released the '%c' lock, then waiter '%c' reported (0: none in 5 s)", rel[i].which, c ? c : '0');
        if (waitpid(rel[i].pid, &st, 0) != rel[i].pid || !WIFEXITED(st) || WEXITSTATUS(st))
            fail("waiter '%c': status %#x", rel[i].which, st);
    }
    // The lease still works: a writer's open breaks it.
    h = fork();
    if (h == 0) _exit(open(LEASE_FILE, O_WRONLY | O_NONBLOCK) < 0 && errno == EWOULDBLOCK ? 0 : 30);
    if (waitpid(h, &st, 0) != h || !WIFEXITED(st) || WEXITSTATUS(st)) fail("a writer opened the leased file without breaking the lease");
    fcntl(l, F_SETLEASE, F_UNLCK);
    return test_report();
}
