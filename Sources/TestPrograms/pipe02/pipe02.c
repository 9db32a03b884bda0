// A parent and its child talk through two pipes without pause while they are checkpointed:
// the parent streams numbered blocks down one pipe, the child checks each and answers with its
// checksum up the other. Data in flight in both pipes at the dump must arrive exactly once and
// in order after restore; both sides count what they saw.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK 1000  // not a divisor of the pipe size: blocks straddle what is in flight

static uint64_t sum(const unsigned char *b, size_t n) {
    uint64_t s = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) s = (s ^ b[i]) * 1099511628211ULL;
    return s;
}

static int full(int fd, void *buf, size_t n, int writing) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = writing ? write(fd, (char *)buf + done, n - done) : read(fd, (char *)buf + done, n - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += r;
    }
    return 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int down[2], up[2];
    if (pipe(down) || pipe(up)) fail("pipe: %m");
    pid_t child = test_fork();
    if (child == 0) {
        close(down[1]); close(up[0]);
        signal(SIGTERM, SIG_IGN);  // the child ends when the stream does
        unsigned char b[BLOCK];
        for (uint64_t n = 0;; n++) {
            if (full(down[0], b, BLOCK, 0)) _exit(0);  // EOF: the parent is done
            unsigned char want[BLOCK];
            datagen(want, BLOCK, n);
            if (memcmp(b, want, BLOCK)) _exit(2);      // lost, doubled or reordered data
            uint64_t s = sum(b, BLOCK);
            if (full(up[1], &s, sizeof(s), 1)) _exit(3);
        }
    }
    close(down[0]); close(up[1]);
    // The parent keeps up to 32 blocks in flight: the pipes hold data whenever the dump comes.
    uint64_t sent = 0, acked = 0;
    unsigned char b[BLOCK];
    test_daemon();
    while (!test_stopped() || acked < sent) {
        if (!test_stopped() && sent - acked < 32) {
            datagen(b, BLOCK, sent);
            if (full(down[1], b, BLOCK, 1)) { fail("write to the child failed: %m"); break; }
            sent++;
            continue;
        }
        uint64_t s;
        if (full(up[0], &s, sizeof(s), 0)) { fail("the child stopped answering after %llu of %llu blocks", (unsigned long long)acked, (unsigned long long)sent); break; }
        datagen(b, BLOCK, acked);
        if (s != sum(b, BLOCK)) { fail("answer %llu has the wrong checksum", (unsigned long long)acked); break; }
        acked++;
    }
    close(down[1]);
    int st;
    waitpid(child, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fail("child: status %#x (2: bad data, 3: could not answer)", st);
    test_msg("%llu blocks exchanged", (unsigned long long)acked);
    if (acked < 100) fail("only %llu blocks exchanged", (unsigned long long)acked);
    return test_report();
}
