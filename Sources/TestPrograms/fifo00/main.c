// A FIFO opened for reading and for writing keeps its data in flight and both descriptions'
// flags.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    const char *msg = "queued in a named pipe";
    unlink("fifo00.fifo");
    if (mkfifo("fifo00.fifo", 0600)) fail("mkfifo: %m");
    int r = open("fifo00.fifo", O_RDONLY | O_NONBLOCK);
    int w = open("fifo00.fifo", O_WRONLY);
    if (r < 0 || w < 0) fail("open: %m");
    if (write(w, msg, strlen(msg)) != (ssize_t)strlen(msg)) fail("write: %m");
    struct stat st;
    fstat(r, &st);
    test_daemon();
    test_waitsig();
    struct stat now;
    if (fstat(r, &now) || now.st_ino != st.st_ino) fail("read end no longer the FIFO fifo00.fifo");
    if ((fcntl(r, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != (O_RDONLY | O_NONBLOCK)) fail("read end flags %#o", fcntl(r, F_GETFL));
    if ((fcntl(w, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != O_WRONLY) fail("write end flags %#o", fcntl(w, F_GETFL));
    char buf[128] = { 0 };
    ssize_t n = read(r, buf, sizeof(buf));
    if (n != (ssize_t)strlen(msg) || memcmp(buf, msg, n)) fail("FIFO holds %zd bytes '%.*s', expected '%s'", n, (int)(n > 0 ? n : 0), buf, msg);
    if (read(r, buf, sizeof(buf)) != -1 || errno != EAGAIN) fail("FIFO has more than was written");
    if (write(w, "more", 4) != 4 || read(r, buf, 4) != 4 || memcmp(buf, "more", 4)) fail("FIFO does not carry new data");
    unlink("fifo00.fifo");
    return test_report();
}
