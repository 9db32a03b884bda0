// Datagram sockets and their peer: the first send on a socket whose connected peer was closed
// fails with ECONNREFUSED (the kernel then forgets the peer: ENOTCONN), while one never
// connected, one disconnected with connect(AF_UNSPEC) and a bound socket others connected to
// fail with ENOTCONN at once. After restore each fails as it would have, and getpeername
// shows the closed peer's name (none, an abstract one, a path). A path peer's socket file,
// removed or left behind, is as it was: restore makes no file for it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static socklen_t abstract(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "%s.%d", name, getpid());
    return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1);
}

// getpeername: -errno, else the name's length (0: unnamed).
static int peer(int s, struct sockaddr_un *out) {
    socklen_t l = sizeof(*out);
    memset(out, 0, sizeof(*out));
    if (getpeername(s, (struct sockaddr *)out, &l)) return -errno;
    return (int)(l - offsetof(struct sockaddr_un, sun_path));
}

static void expect_peer(const char *who, int s, int want_len, const struct sockaddr_un *want) {
    struct sockaddr_un got;
    int n = peer(s, &got);
    if (n != want_len || (n > 0 && memcmp(got.sun_path, want->sun_path, n)))
        fail("%s: getpeername gives %d (%s), expected %d", who, n, n < 0 ? strerror(-n) : "a name", want_len);
}

static void expect_sends(const char *who, int s, int first, int second) {
    int e[2] = { 0, 0 };
    for (int i = 0; i < 2; i++)
        if (send(s, "x", 1, MSG_DONTWAIT) < 0) e[i] = errno;
    if (e[0] != first || e[1] != second)
        fail("%s: sends fail with %s, then %s; expected %s, then %s", who, strerror(e[0]), strerror(e[1]), strerror(first), strerror(second));
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int sv[2], qv[2], bv[2], uv[2];
    struct sockaddr_un srv_name, own_name, none;
    memset(&none, 0, sizeof(none));

    // 1. A socketpair end whose other end was closed.
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv)) fail("socketpair: %m");
    close(sv[1]);
    // 2. The same, with a datagram its peer sent before it closed.
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, qv)) fail("socketpair: %m");
    if (send(qv[1], "queued", 6, 0) != 6) fail("send: %m");
    close(qv[1]);
    // 3. Bound itself (abstract), its unnamed peer closed.
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, bv)) fail("socketpair: %m");
    socklen_t own_len = abstract(&own_name, "unix07-own");
    if (bind(bv[0], (struct sockaddr *)&own_name, own_len)) fail("bind own: %m");
    close(bv[1]);
    // 4. Connected to an abstract name whose socket closed; 5. the server socket a client
    // connected to (connected state, no peer of its own).
    int srv = socket(AF_UNIX, SOCK_DGRAM, 0), client = socket(AF_UNIX, SOCK_DGRAM, 0);
    socklen_t srv_len = abstract(&srv_name, "unix07-srv");
    if (bind(srv, (struct sockaddr *)&srv_name, srv_len)) fail("bind server: %m");
    if (connect(client, (struct sockaddr *)&srv_name, srv_len)) fail("connect: %m");
    int server = socket(AF_UNIX, SOCK_DGRAM, 0), other = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un server_name;
    socklen_t server_len = abstract(&server_name, "unix07-server");
    if (bind(server, (struct sockaddr *)&server_name, server_len)) fail("bind: %m");
    if (connect(other, (struct sockaddr *)&server_name, server_len)) fail("connect: %m");
    close(other);
    close(srv);
    // 8. Connected to a path (relative) whose socket closed and was removed; 9. one whose
    // socket file was left behind.
    struct sockaddr_un gone_name = { .sun_family = AF_UNIX }, left_name = { .sun_family = AF_UNIX };
    snprintf(gone_name.sun_path, sizeof(gone_name.sun_path), "unix07-gone.%d.sock", getpid());
    snprintf(left_name.sun_path, sizeof(left_name.sun_path), "unix07-left.%d.sock", getpid());
    int gone_len = (int)strlen(gone_name.sun_path) + 1, left_len = (int)strlen(left_name.sun_path) + 1;  // with the NUL, as the kernel keeps it
    int gone_srv = socket(AF_UNIX, SOCK_DGRAM, 0), left_srv = socket(AF_UNIX, SOCK_DGRAM, 0);
    int to_gone = socket(AF_UNIX, SOCK_DGRAM, 0), to_left = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(gone_srv, (struct sockaddr *)&gone_name, sizeof(gone_name)) || bind(left_srv, (struct sockaddr *)&left_name, sizeof(left_name)))
        fail("bind path: %m");
    if (connect(to_gone, (struct sockaddr *)&gone_name, sizeof(gone_name)) || connect(to_left, (struct sockaddr *)&left_name, sizeof(left_name)))
        fail("connect path: %m");
    close(gone_srv);
    unlink(gone_name.sun_path);
    close(left_srv);
    struct stat left_st;
    if (stat(left_name.sun_path, &left_st)) fail("stat %s: %m", left_name.sun_path);
    // 6. Never connected; 7. connected, then disconnected with AF_UNSPEC.
    int never = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, uv)) fail("socketpair: %m");
    struct sockaddr unspec = { .sa_family = AF_UNSPEC };
    if (connect(uv[0], &unspec, sizeof(unspec.sa_family))) fail("connect(AF_UNSPEC): %m");
    close(uv[1]);  // still connected to uv[0], one way: not this test's shape

    // Set-up as expected (nothing here consumes the state: getpeername only).
    expect_peer("closed peer (set-up)", sv[0], 0, &none);
    expect_peer("closed named peer (set-up)", client, (int)(srv_len - offsetof(struct sockaddr_un, sun_path)), &srv_name);
    expect_peer("server (set-up)", server, -ENOTCONN, &none);
    expect_peer("closed path peer (set-up)", to_gone, gone_len, &gone_name);
    test_daemon();
    test_waitsig();

    expect_peer("closed peer", sv[0], 0, &none);
    expect_sends("closed peer", sv[0], ECONNREFUSED, ENOTCONN);
    char buf[16];
    ssize_t n = recv(qv[0], buf, sizeof(buf), MSG_DONTWAIT);
    if (n != 6 || memcmp(buf, "queued", 6)) fail("queued datagram: got %zd bytes", n);
    expect_peer("closed peer with a queue", qv[0], 0, &none);
    expect_sends("closed peer with a queue", qv[0], ECONNREFUSED, ENOTCONN);
    struct sockaddr_un got;
    socklen_t gl = sizeof(got);
    if (getsockname(bv[0], (struct sockaddr *)&got, &gl) || gl != own_len || memcmp(got.sun_path, own_name.sun_path, own_len - offsetof(struct sockaddr_un, sun_path)))
        fail("bound socket with a closed peer: its name changed");
    expect_peer("bound socket with a closed peer", bv[0], 0, &none);
    expect_sends("bound socket with a closed peer", bv[0], ECONNREFUSED, ENOTCONN);
    expect_peer("closed named peer", client, (int)(srv_len - offsetof(struct sockaddr_un, sun_path)), &srv_name);
    expect_sends("closed named peer", client, ECONNREFUSED, ENOTCONN);
    expect_peer("server", server, -ENOTCONN, &none);
    expect_sends("server", server, ENOTCONN, ENOTCONN);
    expect_peer("closed path peer, removed", to_gone, gone_len, &gone_name);
    expect_sends("closed path peer, removed", to_gone, ECONNREFUSED, ENOTCONN);
    expect_peer("closed path peer, file left", to_left, left_len, &left_name);
    expect_sends("closed path peer, file left", to_left, ECONNREFUSED, ENOTCONN);
    struct stat st;
    if (stat(gone_name.sun_path, &st) == 0 || errno != ENOENT) fail("%s: there after restore (%m)", gone_name.sun_path);
    if (stat(left_name.sun_path, &st) || st.st_ino != left_st.st_ino || !S_ISSOCK(st.st_mode)) fail("%s: not the socket file left behind", left_name.sun_path);
    unlink(left_name.sun_path);
    expect_peer("never connected", never, -ENOTCONN, &none);
    expect_sends("never connected", never, ENOTCONN, ENOTCONN);
    expect_peer("disconnected", uv[0], -ENOTCONN, &none);
    expect_sends("disconnected", uv[0], ENOTCONN, ENOTCONN);
    return test_report();
}
