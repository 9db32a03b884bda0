// zdtm's ns flavour: starts a workload as the child of an init in new pid, mount, network,
// UTS and IPC namespaces (zdtm.py's ns flavour). Runs in a child forked from a multithreaded
// Swift process, so only syscalls and async-signal-safe calls are made.
#define _GNU_SOURCE
#include "CKernel.h"
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

// The workload's own pidfile (its pid inside), set before the handler: as zdtm.py's ns
// init (test/zdtm/lib/ns.c), SIGTERM goes to the workload's root only, which tells its
// children itself, as it does in flavour h. Signalling every process instead made the
// children's wake-up race the root's (CRIU's tty00 expects SIGHUP before its SIGTERM).
static char ns_pidfile[4096];

static void ns_init_term(int sig) {
    (void)sig;
    char b[32];
    int fd = ns_pidfile[0] ? open(ns_pidfile, O_RDONLY | O_CLOEXEC) : -1;
    ssize_t n = fd >= 0 ? read(fd, b, sizeof(b) - 1) : -1;
    if (fd >= 0) close(fd);
    pid_t pid = 0;
    for (ssize_t i = 0; i < n && b[i] >= '0' && b[i] <= '9'; i++) pid = pid * 10 + (b[i] - '0');
    if (pid > 1) kill(pid, SIGTERM);
    else kill(-1, SIGTERM);  // no pidfile yet: every other process of the namespace
}

static int write_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        s += w; n -= (size_t)w;
    }
    return 0;
}

static int loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq r;
    memset(&r, 0, sizeof(r));
    strcpy(r.ifr_name, "lo");
    int rc = ioctl(s, SIOCGIFFLAGS, &r);
    if (rc == 0) { r.ifr_flags |= IFF_UP; rc = ioctl(s, SIOCSIFFLAGS, &r); }
    close(s);
    return rc;
}

static void write_map(pid_t pid, const char *file, const char *map) {
    char path[64];
    int n = snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    if (n <= 0) _exit(133);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, map, strlen(map)) < 0) _exit(133);
    close(fd);
}

pid_t ck_ns_launch(const char *bin, char *const argv[], const char *cwd, const char *log,
                   const char *pidfile, const char *pidtmp) {
    return ck_uns_launch(bin, argv, cwd, log, pidfile, pidtmp, NULL);
}

pid_t ck_uns_launch(const char *bin, char *const argv[], const char *cwd, const char *log,
                    const char *pidfile, const char *pidtmp, const char *idmap) {
    pid_t starter = fork();
    if (starter != 0) return starter < 0 ? -errno : starter;
    // The starter: stays in zdtm's namespaces, reports the init's pid as zdtm sees it.
    setsid();  // out of zdtm's session: zdtm reaps a case by its session
    // None of zdtm's files may reach the init, which never execs and is dumped with the tree.
    syscall(SYS_close_range, 3, ~0U, 0);
    int p[2], go[2];
    if (pipe2(p, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) _exit(120);
    pid_t init;
    if (idmap) {
        // uns: the user namespace owns the others, so all are made in one clone. The host's
        // `ip netns` files are unmounted first, in a namespace of root's: once copied into
        // the user namespace's they would be locked there.
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) _exit(122);
        while (umount2("/run/netns", MNT_DETACH) == 0) {}
        init = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD, 0, 0, 0, 0);
    } else {
        if (unshare(CLONE_NEWPID) < 0) _exit(120);
        init = fork();
    }
    if (init < 0) _exit(121);
    if (init == 0) {
        close(p[0]);
        close(go[1]);
        char c0;
        // Wait for the maps: until then the init's ids mean nothing inside.
        while (read(go[0], &c0, 1) < 0 && errno == EINTR) {}
        close(go[0]);
        setsid();
        // Files zdtm's root owns are opened before the ids change.
        int null = open("/dev/null", O_RDWR), out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (null < 0 || out < 0) _exit(128);
        if (idmap) {
            if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0) _exit(134);
        } else if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC) < 0) _exit(122);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) _exit(123);
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) _exit(124);
        // The host's `ip netns` files come and go with other tests: not the workload's.
        while (umount2("/run/netns", MNT_DETACH) == 0) {}
        if (loopback_up() < 0) _exit(125);
        if (chdir(cwd) < 0) _exit(126);
        dup2(null, 0); dup2(out, 1); dup2(out, 2);
        if (null > 2) close(null);
        if (out > 2) close(out);
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = ns_init_term;
        for (int i = 0; argv[i]; i++)
            if (!strncmp(argv[i], "--pidfile=", 10)) {
                size_t k = 0;
                for (const char *q = argv[i] + 10; *q && k + 1 < sizeof(ns_pidfile); q++) ns_pidfile[k++] = *q;
                ns_pidfile[k] = 0;
            }
        sigaction(SIGTERM, &sa, NULL);
        pid_t w = fork();
        if (w < 0) _exit(127);
        if (w == 0) {
            execv(bin, argv);
            _exit(129);
        }
        int st = 0;
        while (waitpid(w, &st, 0) < 0 && errno == EINTR) {}
        char c = (char)(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        write_all(p[1], &c, 1);
        close(p[1]);
        // init: reap whatever re-parents here until the namespace is empty.
        for (;;) {
            if (wait(NULL) < 0 && errno == ECHILD) _exit(0);
        }
    }
    close(p[1]);
    close(go[0]);
    if (idmap) {
        write_map(init, "uid_map", idmap);
        write_map(init, "gid_map", idmap);
    }
    if (write_all(go[1], "g", 1) < 0) _exit(133);
    close(go[1]);
    char c = 0;
    ssize_t n;
    while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR) {}
    if (n != 1) {
        // The init gave up before the workload ran: its own code says where.
        int st = 0;
        while (waitpid(init, &st, 0) < 0 && errno == EINTR) {}
        _exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 130);
    }
    if (c != 0) _exit(c);
    // EOF once the init has closed its end too: zdtm records the init's fds after this.
    char more;
    while ((n = read(p[0], &more, 1)) != 0 && (n > 0 || errno == EINTR)) {}
    char num[16];
    int len = 0;
    char rev[16];
    for (pid_t v = init; v > 0; v /= 10) rev[len++] = (char)('0' + v % 10);
    for (int i = 0; i < len; i++) num[i] = rev[len - 1 - i];
    num[len++] = '\n';
    int fd = open(pidtmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, num, (size_t)len) < 0) _exit(131);
    close(fd);
    if (rename(pidtmp, pidfile) < 0) _exit(132);
    _exit(0);
}
