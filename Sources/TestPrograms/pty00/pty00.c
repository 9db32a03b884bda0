// A pty whose master and slave are both in the tree: the daemon is a session leader with the
// slave as its controlling terminal, a child's process group is the foreground one, the
// master is in packet mode and non-blocking, the slave exclusive, with custom termios (raw-ish,
// 9600 baud, VINTR ^A) and window size, and /dev/tty is open. After SIGTERM: same index and
// slave path, each setting as it was, the session and foreground group, and data written after
// the restore flows both ways (master -> slave, slave -> master with packet mode's leading
// TIOCPKT_DATA byte, /dev/tty -> master).
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
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static const struct winsize want_ws = { .ws_row = 37, .ws_col = 123, .ws_xpixel = 5, .ws_ypixel = 7 };

static void set_termios(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t)) fail("tcgetattr: %m");
    t.c_lflag &= ~(ICANON | ECHO | ECHOE | ECHOK | IEXTEN);
    t.c_iflag &= ~(ICRNL | IXON);
    t.c_oflag &= ~OPOST;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    t.c_cc[VINTR] = 1;
    cfsetispeed(&t, B9600);
    cfsetospeed(&t, B9600);
    if (tcsetattr(fd, TCSANOW, &t)) fail("tcsetattr: %m");
}

static int same_termios(const struct termios *a, const struct termios *b) {
    return a->c_iflag == b->c_iflag && a->c_oflag == b->c_oflag && a->c_cflag == b->c_cflag && a->c_lflag == b->c_lflag &&
           !memcmp(a->c_cc, b->c_cc, sizeof(a->c_cc)) && cfgetispeed(a) == cfgetispeed(b) && cfgetospeed(a) == cfgetospeed(b);
}

static long tty_nr(void) {
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    if (!f || !fgets(buf, sizeof(buf), f)) { if (f) fclose(f); return -1; }
    fclose(f);
    char *p = strrchr(buf, ')');
    long nr = -1;
    char state;
    int ppid, pgrp, sid;
    if (!p || sscanf(p + 2, "%c %d %d %d %ld", &state, &ppid, &pgrp, &sid, &nr) != 5) return -1;
    return nr;
}

// Reads exactly n bytes from a non-blocking or blocking fd, waiting up to 5 s.
static int read_all(int fd, char *buf, int n) {
    int got = 0;
    while (got < n) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 5000) != 1) return got;
        int r = read(fd, buf + got, n - got);
        if (r <= 0) { if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue; return got; }
        got += r;
    }
    return got;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) fail("posix_openpt: %m");
    char path[64];
    if (ptsname_r(m, path, sizeof(path))) fail("ptsname: %m");
    int index = -1;
    if (ioctl(m, TIOCGPTN, &index)) fail("TIOCGPTN: %m");
    int s = open(path, O_RDWR | O_NOCTTY);
    if (s < 0) fail("open %s: %m", path);
    if (ioctl(s, TIOCSCTTY, 0)) fail("TIOCSCTTY: %m");
    set_termios(s);
    // The controlling-terminal alias, which names this pty now.
    int tty = open("/dev/tty", O_RDWR);
    if (tty < 0) fail("open /dev/tty: %m");
    if (ioctl(m, TIOCSWINSZ, &want_ws)) fail("TIOCSWINSZ: %m");
    int one = 1;
    if (ioctl(m, TIOCPKT, &one)) fail("TIOCPKT: %m");
    if (ioctl(s, TIOCEXCL)) fail("TIOCEXCL: %m");
    if (fcntl(m, F_SETFL, O_NONBLOCK)) fail("O_NONBLOCK: %m");
    struct termios want;
    if (tcgetattr(s, &want)) fail("tcgetattr: %m");
    struct stat sst;
    if (fstat(s, &sst)) fail("fstat: %m");

    // The foreground group: a child in a group of its own, in this session.
    int ready[2];
    if (pipe(ready)) fail("pipe: %m");
    pid_t fg = test_fork();
    if (fg == 0) {
        setpgid(0, 0);
        close(ready[0]);
        close(ready[1]);
        for (;;) pause();
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 0) fail("child");
    close(ready[0]);
    setpgid(fg, fg);
    if (tcsetpgrp(s, fg)) fail("tcsetpgrp: %m");
    // Packet mode queues a status byte on a group change? No: only flow control and flushes.
    test_daemon();
    test_waitsig();

    char now[64];
    int idx = -1;
    if (ptsname_r(m, now, sizeof(now)) || strcmp(now, path)) fail("slave is %s, was %s", now, path);
    if (ioctl(m, TIOCGPTN, &idx) || idx != index) fail("pty index %d, was %d", idx, index);
    struct stat st;
    if (fstat(s, &st) || st.st_rdev != sst.st_rdev) fail("slave fd is another device");
    struct termios t;
    if (tcgetattr(s, &t)) fail("tcgetattr: %m");
    else if (!same_termios(&t, &want)) fail("termios changed: iflag %o/%o oflag %o/%o lflag %o/%o cflag %o/%o", t.c_iflag, want.c_iflag, t.c_oflag, want.c_oflag, t.c_lflag, want.c_lflag, t.c_cflag, want.c_cflag);
    struct winsize ws;
    if (ioctl(s, TIOCGWINSZ, &ws) || memcmp(&ws, &want_ws, sizeof(ws))) fail("winsize %dx%d (%dx%d px), was 37x123 (5x7)", ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel);
    int v = -1;
    if (ioctl(m, TIOCGPKT, &v) || v != 1) fail("packet mode %d", v);
    if (ioctl(s, TIOCGEXCL, &v) || v != 1) fail("slave not exclusive (%d)", v);
    if (ioctl(m, TIOCGPTLCK, &v) || v != 0) fail("pty locked (%d)", v);
    if (!(fcntl(m, F_GETFL) & O_NONBLOCK)) fail("master lost O_NONBLOCK");
    if (tcgetsid(s) != getpid()) fail("slave's session is %d, not %d", tcgetsid(s), getpid());
    if (tcgetpgrp(s) != fg) fail("foreground group %d, not %d", tcgetpgrp(s), fg);
    if (tty_nr() != (long)st.st_rdev) fail("controlling tty %lx, not %lx", tty_nr(), (long)st.st_rdev);

    // Data both ways, from the foreground (SIGTTOU ignored to take it back).
    signal(SIGTTOU, SIG_IGN);
    if (tcsetpgrp(s, getpgrp())) fail("tcsetpgrp back: %m");
    char buf[16] = {0};
    if (write(m, "ping", 4) != 4) fail("write master: %m");
    if (read_all(s, buf, 4) != 4 || memcmp(buf, "ping", 4)) fail("slave read \"%.4s\", not ping", buf);
    if (write(s, "pong", 4) != 4) fail("write slave: %m");
    memset(buf, 0, sizeof(buf));
    if (read_all(m, buf, 5) != 5 || buf[0] != TIOCPKT_DATA || memcmp(buf + 1, "pong", 4)) fail("master read %02x \"%.4s\", not 00 pong", buf[0], buf + 1);
    if (fstat(tty, &st) || st.st_rdev != makedev(5, 0)) fail("the /dev/tty fd is another device");
    if (write(tty, "tty!", 4) != 4) fail("write /dev/tty: %m");
    memset(buf, 0, sizeof(buf));
    if (read_all(m, buf, 5) != 5 || buf[0] != TIOCPKT_DATA || memcmp(buf + 1, "tty!", 4)) fail("master read %02x \"%.4s\" for /dev/tty, not 00 tty!", buf[0], buf + 1);
    kill(fg, SIGKILL);
    waitpid(fg, NULL, 0);
    return test_report();
}
