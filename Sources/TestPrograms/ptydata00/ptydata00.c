// Bytes in flight in ptys, both ways, must come back exactly (docs/TTY.md). Each scenario runs
// twice at set-up: on a reference pty, read at once to learn what the kernel gives a reader,
// and on the pty that goes through the dump with everything still queued. After SIGTERM the
// second is read the same way and must give the same reads:
//   cooked: canonical with ECHO, ICRNL, ONLCR, ISIG, VEOL ';' - complete lines, an EOF line, a
//           line ended by EOF, a ^V-quoted ^C and \n, an erase, a partial line; the slave's
//           output and the echoes wait on the master (echo must not come twice);
//   raw:    every byte value both ways, no processing;
//   packet: the master in packet mode with a TIOCPKT_FLUSHREAD status byte, then data.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

enum { COOKED, RAW, PACKET, KINDS };
static const char *names[KINDS] = { "cooked", "raw", "packet" };

static void openpty2(int *m, int *s) {
    *m = posix_openpt(O_RDWR | O_NOCTTY);
    char path[64];
    if (*m < 0 || grantpt(*m) || unlockpt(*m) || ptsname_r(*m, path, sizeof(path))) fail("posix_openpt: %m");
    *s = open(path, O_RDWR | O_NOCTTY);
    if (*s < 0) fail("open %s: %m", path);
}

static void put(int fd, const void *b, size_t n) {
    if (write(fd, b, n) != (ssize_t)n) fail("write: %m");
}

// Waits until what the line disciplines made of the last writes waits on the master: on the
// reference pty until the master's queue stops growing, on the tested one until it holds as
// much as the reference's did (so echoes and output interleave the same on both).
static int marks[KINDS][4];
static int settle(int kind, int step, int m, int reference) {
    int n = -1, last = -2, still = 0;
    for (int i = 0; i < 500; i++) {
        if (ioctl(m, FIONREAD, &n)) { fail("FIONREAD: %m"); return -1; }
        if (reference ? (n == last && ++still >= 10) : n >= marks[kind][step]) break;
        if (n != last) still = 0;
        last = n;
        usleep(10000);
    }
    if (reference) marks[kind][step] = n;
    return n;
}

// The same steps on any pty: termios, then bytes written both ways, never read.
static void scenario(int kind, int m, int s, int reference) {
    struct termios t;
    if (tcgetattr(s, &t)) fail("tcgetattr: %m");
    if (kind == COOKED) {
        t.c_cc[VEOL] = ';';
        if (tcsetattr(s, TCSANOW, &t)) fail("tcsetattr: %m");
        static const char in[] = "first line\rsecond\n\x04" "ab\x04" "semi;q\x16\x03z\x16\nw\n" "part\x7fial";
        put(m, in, sizeof(in) - 1);
        settle(kind, 0, m, reference);  // the echoes first, then the output
        put(s, "out1\nout2\n", 10);
    } else if (kind == RAW) {
        cfmakeraw(&t);
        if (tcsetattr(s, TCSANOW, &t)) fail("tcsetattr: %m");
        unsigned char b[256];
        for (int i = 0; i < 256; i++) b[i] = (unsigned char)(255 - i);
        put(m, b, sizeof(b));
        for (int i = 0; i < 256; i++) b[i] = (unsigned char)i;
        put(s, b, sizeof(b));
        put(s, "\n\r\n", 3);
    } else {
        int one = 1;
        if (ioctl(m, TIOCPKT, &one)) fail("TIOCPKT: %m");
        put(m, "gone\n", 5);
        settle(kind, 0, m, reference);
        if (tcflush(s, TCIFLUSH)) fail("tcflush: %m");  // TIOCPKT_FLUSHREAD for the master
        put(m, "in\n", 3);
        settle(kind, 1, m, reference);
        put(s, "pk\n", 3);
    }
    settle(kind, 2, m, reference);
}

static void hex(char **o, size_t *left, const unsigned char *b, int n) {
    for (int i = 0; i < n && *left > 3; i++) {
        int w = snprintf(*o, *left, "%02x", b[i]);
        *o += w; *left -= w;
    }
}

// Every read a reader gets now, slave first (lines one read each, then the partial line
// completed by a \n from the master), then the master, as text for comparison.
static void collect(int kind, int m, int s, char *out, size_t left) {
    unsigned char b[8192];
    char *o = out;
    *o = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (;;) {
            struct pollfd p = { .fd = s, .events = POLLIN };
            if (poll(&p, 1, 500) != 1) break;
            int n = read(s, b, kind == RAW ? 100 : sizeof(b));
            if (n < 0) { if (errno == EAGAIN || errno == EINTR) continue; fail("read slave: %m"); return; }
            int w = snprintf(o, left, "s%d:", n); o += w; left -= w;
            hex(&o, &left, b, n);
            if (left > 2) { *o++ = ' '; *o = 0; left--; }
            if (n == 0 && kind == RAW) break;
        }
        if (pass == 0 && kind != RAW) put(m, "\n", 1);
        if (pass == 0 && kind == RAW) break;
    }
    usleep(50000);
    for (;;) {
        struct pollfd p = { .fd = m, .events = POLLIN | POLLPRI };
        if (poll(&p, 1, 500) != 1) break;
        int n = read(m, b, sizeof(b));
        if (n < 0) { if (errno == EAGAIN || errno == EINTR) continue; fail("read master: %m"); return; }
        int w = snprintf(o, left, "m%d:", n); o += w; left -= w;
        hex(&o, &left, b, n);
        if (left > 2) { *o++ = ' '; *o = 0; left--; }
    }
}

static char want[KINDS][16384], got[16384];

int main(int argc, char **argv) {
    test_init(argc, argv);
    int m[KINDS], s[KINDS];
    for (int k = 0; k < KINDS; k++) {
        int rm, rs;
        openpty2(&rm, &rs);
        scenario(k, rm, rs, 1);
        collect(k, rm, rs, want[k], sizeof(want[k]));
        close(rm);
        close(rs);
        openpty2(&m[k], &s[k]);
        scenario(k, m[k], s[k], 0);
        if (fcntl(m[k], F_SETFL, O_NONBLOCK) || fcntl(s[k], F_SETFL, O_NONBLOCK)) fail("O_NONBLOCK: %m");
        int qm = 0, qs = 0;
        ioctl(m[k], FIONREAD, &qm);
        ioctl(s[k], FIONREAD, &qs);
        if (qm == 0) fail("%s: nothing queued to the master", names[k]);
        test_msg("%s: %d bytes queued to the master, %d to the slave (complete lines); reads: %s\n", names[k], qm, qs, want[k]);
    }
    test_daemon();
    test_waitsig();
    for (int k = 0; k < KINDS && !test_failed(); k++) {
        collect(k, m[k], s[k], got, sizeof(got));
        if (strcmp(got, want[k])) {
            size_t i = 0;
            while (got[i] && got[i] == want[k][i]) i++;
            size_t from = i > 40 ? i - 40 : 0;
            fail("%s: the reads differ at +%zu: want ...%.120s, got ...%.120s", names[k], i, want[k] + from, got + from);
        }
    }
    return test_report();
}
