// Hung-up ptys come back hung up (docs/TTY.md):
//   a slave whose master was closed (CRIU's pty04): two descriptions, one of them the session's
//   controlling terminal before the hang-up; reads give 0, writes and termios EIO, poll the
//   same events, the same device number and /proc link ("/dev/pts/N (deleted)"), no
//   controlling terminal;
//   a master whose slave was closed: output the slave wrote before closing still waits on the
//   master, then reads give EIO; poll the same; input written to the master after the close
//   waits in the slave, for whoever opens it next.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static short revents(int fd) {
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLPRI | POLLRDHUP };
    if (poll(&p, 1, 0) < 0) return -1;
    return p.revents;
}

static void link_of(int fd, char *buf, size_t n) {
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    ssize_t r = readlink(p, buf, n - 1);
    buf[r < 0 ? 0 : r] = 0;
}

// No controlling terminal: /dev/tty opens nothing (ENXIO).
static int has_ctty(void) {
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (fd >= 0) close(fd);
    return fd >= 0 || errno != ENXIO;
}

static int check_hung(int fd, const char *what, short want_ev, dev_t want_rdev, const char *want_link) {
    char buf[16], l[256];
    struct stat st;
    struct termios t;
    if (revents(fd) != want_ev) { fail("%s: poll gives %#x, gave %#x", what, revents(fd), want_ev); return 1; }
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r != 0) { fail("%s: read gives %zd (%m), not 0", what, r); return 1; }
    if (write(fd, "x", 1) != -1 || errno != EIO) { fail("%s: write does not fail with EIO (%m)", what); return 1; }
    if (tcgetattr(fd, &t) != -1 || errno != EIO) { fail("%s: tcgetattr does not fail with EIO (%m)", what); return 1; }
    if (fstat(fd, &st) || st.st_rdev != want_rdev) { fail("%s: device %#lx, was %#lx", what, (long)st.st_rdev, (long)want_rdev); return 1; }
    link_of(fd, l, sizeof(l));
    if (strcmp(l, want_link)) { fail("%s: /proc link %s, was %s", what, l, want_link); return 1; }
    return 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    signal(SIGHUP, SIG_IGN);

    // A slave hung up by its master's close.
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    char path[64];
    if (m < 0 || grantpt(m) || unlockpt(m) || ptsname_r(m, path, sizeof(path))) fail("posix_openpt: %m");
    int s1 = open(path, O_RDWR), s2 = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (s1 < 0 || s2 < 0) fail("open %s: %m", path);
    if (ioctl(s1, TIOCSCTTY, 0)) fail("TIOCSCTTY: %m");
    close(m);
    struct stat st;
    if (fstat(s1, &st)) fail("fstat: %m");
    short ev1 = revents(s1), ev2 = revents(s2);
    char l1[256], l2[256];
    link_of(s1, l1, sizeof(l1));
    link_of(s2, l2, sizeof(l2));
    if (has_ctty()) fail("still a controlling terminal after the hang-up (%m)");
    int flags2 = fcntl(s2, F_GETFL);

    // A master whose slave was closed, output waiting on it and input waiting in the slave.
    int m2 = posix_openpt(O_RDWR | O_NOCTTY);
    char path2[64];
    if (m2 < 0 || grantpt(m2) || unlockpt(m2) || ptsname_r(m2, path2, sizeof(path2))) fail("posix_openpt: %m");
    int s3 = open(path2, O_RDWR | O_NOCTTY);
    if (s3 < 0) fail("open %s: %m", path2);
    struct termios t;
    if (tcgetattr(s3, &t)) fail("tcgetattr: %m");
    t.c_lflag &= ~ECHO;
    if (tcsetattr(s3, TCSANOW, &t)) fail("tcsetattr: %m");
    if (write(s3, "bye\n", 4) != 4) fail("write: %m");
    close(s3);
    if (write(m2, "late\n", 5) != 5) fail("write to the master after the slave's close: %m");
    usleep(50000);
    short evm = revents(m2);
    if (!(evm & POLLHUP)) fail("the master does not poll HUP (%#x)", evm);
    test_daemon();
    test_waitsig();

    if (!check_hung(s1, "slave 1", ev1, st.st_rdev, l1) && !check_hung(s2, "slave 2", ev2, st.st_rdev, l2)) {
        if (fcntl(s2, F_GETFL) != flags2) fail("slave 2: flags %#x, were %#x", fcntl(s2, F_GETFL), flags2);
        if (has_ctty()) fail("a controlling terminal after restore (%m)");
    }
    if (revents(m2) != evm) fail("master: poll gives %#x, gave %#x", revents(m2), evm);
    char buf[64];
    ssize_t r = read(m2, buf, sizeof(buf));
    if (r != 5 || memcmp(buf, "bye\r\n", 5)) fail("master: read %zd bytes, not the slave's \"bye\\r\\n\"", r);
    else if (read(m2, buf, sizeof(buf)) != -1 || errno != EIO) fail("master: a second read does not fail with EIO (%m)");
    int s4 = open(path2, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (s4 < 0) fail("reopen %s: %m", path2);
    else {
        r = read(s4, buf, sizeof(buf));
        if (r != 5 || memcmp(buf, "late\n", 5)) fail("the slave reopened reads %zd bytes, not \"late\\n\" written to its master", r);
        close(s4);
    }
    return test_report();
}
