// A TCP server (the daemon, listening on 127.0.0.1 and accepting) and a client (its child)
// stream sequence-numbered patterns to each other in both directions, reading slower than
// they write so that both ends always hold data in their send and receive queues: the dump
// catches bytes in flight everywhere. After SIGTERM each side sends a last stretch, shuts
// its side down and reads to EOF; every byte received must match the peer's pattern at its
// offset (nothing lost, duplicated or corrupted), and each side's received total must equal
// what the other sent.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SERVER_SEED 0x5e47e4
#define CLIENT_SEED 0xc11e47
#define TAIL (512 << 10)  // bytes each side sends after SIGTERM: the connection still works

struct report {
    uint64_t sent, received;
    int bad, done;
    char msg[240];
};

static uint8_t pat(uint64_t seed, uint64_t off) { return (uint8_t)(pattern_word(seed, off / 8) >> (8 * (off % 8))); }

struct side {
    int fd;
    uint64_t send_seed, recv_seed;
    uint64_t sent, received;
    int bad;
    char msg[240];
};

static int pump_send(struct side *s, size_t max) {
    uint8_t buf[16384];
    size_t n = max < sizeof(buf) ? max : sizeof(buf);
    for (size_t i = 0; i < n; i++) buf[i] = pat(s->send_seed, s->sent + i);
    ssize_t w = send(s->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        snprintf(s->msg, sizeof(s->msg), "send at offset %llu: %m", (unsigned long long)s->sent);
        s->bad = 1;
        return -1;
    }
    s->sent += w;
    return 0;
}

// Returns 1 on EOF.
static int pump_recv(struct side *s, size_t max) {
    uint8_t buf[16384];
    size_t n = max < sizeof(buf) ? max : sizeof(buf);
    ssize_t r = recv(s->fd, buf, n, MSG_DONTWAIT);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        snprintf(s->msg, sizeof(s->msg), "recv at offset %llu: %m", (unsigned long long)s->received);
        s->bad = 1;
        return -1;
    }
    if (r == 0) return 1;
    for (ssize_t i = 0; i < r; i++) {
        if (buf[i] != pat(s->recv_seed, s->received + i)) {
            snprintf(s->msg, sizeof(s->msg), "stream byte %llu: expected %#x, got %#x (lost, duplicated or corrupted data)",
                     (unsigned long long)(s->received + i), pat(s->recv_seed, s->received + i), buf[i]);
            s->bad = 1;
            return -1;
        }
    }
    s->received += r;
    return 0;
}

// The server passes SIGTERM on to the client as soon as it gets it: both finish together.
static pid_t peer_to_stop;

// Streams until SIGTERM, then finishes: TAIL more bytes, shutdown, read to EOF.
static void run(struct side *s) {
    while (!test_stopped() && !s->bad) {
        // Write as much as fits, read 4 KiB a millisecond: the queues stay full both ways.
        if (pump_send(s, 16384) < 0) break;
        if (pump_recv(s, 4096) < 0) break;
        usleep(1000);
    }
    while (!test_stopped()) usleep(1000);
    if (peer_to_stop) kill(peer_to_stop, SIGTERM);
    if (s->bad) return;
    uint64_t end = s->sent + TAIL;
    int eof = 0, shut = 0;
    time_t deadline = time(NULL) + 20;  // below zdtm's own limit, so a stall is reported with its numbers
    while (!s->bad && (!eof || !shut)) {
        if (time(NULL) > deadline) {
            snprintf(s->msg, sizeof(s->msg), "stalled after restore: sent %llu of %llu, received %llu, eof %d",
                     (unsigned long long)s->sent, (unsigned long long)end, (unsigned long long)s->received, eof);
            s->bad = 1;
            return;
        }
        struct pollfd p = {.fd = s->fd, .events = POLLIN | (shut ? 0 : POLLOUT)};
        poll(&p, 1, 100);
        if (!shut) {
            if (pump_send(s, end - s->sent) < 0) return;
            if (s->sent == end) {
                if (shutdown(s->fd, SHUT_WR)) {
                    snprintf(s->msg, sizeof(s->msg), "shutdown: %m");
                    s->bad = 1;
                    return;
                }
                shut = 1;
            }
        }
        while (!eof) {
            uint64_t before = s->received;
            int r = pump_recv(s, 16384);
            if (r < 0) return;
            if (r == 1) eof = 1;
            if (s->received == before) break;
        }
    }
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    struct report *rep = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rep == MAP_FAILED) fail("mmap: %m");
    // Not all zero at dump time: an all-zero shared page leaves an empty pages image.
    strcpy(rep->msg, "client did not report");
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 4) || getsockname(ls, (struct sockaddr *)&a, &al)) fail("listen: %m");
    pid_t child = test_fork();
    if (child == 0) {
        struct side s = {.send_seed = CLIENT_SEED, .recv_seed = SERVER_SEED};
        s.fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s.fd, (struct sockaddr *)&a, sizeof(a))) {
            snprintf(rep->msg, sizeof(rep->msg), "client connect: %m");
            rep->bad = 1;
            _exit(1);
        }
        setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        run(&s);
        rep->sent = s.sent;
        rep->received = s.received;
        rep->bad = s.bad;
        memcpy(rep->msg, s.msg, sizeof(rep->msg));
        rep->done = 1;
        _exit(s.bad);
    }
    struct side s = {.send_seed = SERVER_SEED, .recv_seed = CLIENT_SEED};
    s.fd = accept(ls, NULL, NULL);
    if (s.fd < 0) fail("accept: %m");
    // Some data on the way before the launcher may dump.
    while (s.received < 65536 && !s.bad) {
        pump_send(&s, 16384);
        pump_recv(&s, 4096);
        usleep(1000);
    }
    test_daemon();
    peer_to_stop = child;
    run(&s);
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st)) fail("client: status %#x", st);
    if (s.bad) fail("server: %s", s.msg);
    if (rep->bad || !rep->done) fail("client: %s", rep->msg);
    if (!s.bad && !rep->bad) {
        if (s.received != rep->sent) fail("server received %llu bytes, client sent %llu", (unsigned long long)s.received, (unsigned long long)rep->sent);
        if (rep->received != s.sent) fail("client received %llu bytes, server sent %llu", (unsigned long long)rep->received, (unsigned long long)s.sent);
    }
    test_msg("server sent %llu received %llu\n", (unsigned long long)s.sent, (unsigned long long)s.received);
    return test_report();
}
