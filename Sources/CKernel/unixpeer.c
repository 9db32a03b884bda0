// Binds a unix socket to a path name without making that file anywhere anyone sees: a helper
// (forked from cryo, raw syscalls only) enters a mount namespace of its own, roots itself in a
// tmpfs there, makes the name's folders and binds. The socket keeps the name (what a peer's
// getpeername shows) and the tmpfs; both go when the socket is closed.
#define _GNU_SOURCE
#include "CKernel.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int bind_privately(int fd, const char *name, unsigned len) {
    if (syscall(SYS_unshare, CLONE_NEWNS) < 0) return errno;
    if (syscall(SYS_mount, "none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return errno;
    // Any folder will do to hold the tmpfs: it is seen only here.
    static const char *const spots[] = { "/tmp", "/mnt", "/run", "/dev" };
    const char *spot = NULL;
    for (unsigned i = 0; i < sizeof(spots) / sizeof(spots[0]) && !spot; i++)
        if (syscall(SYS_mount, "cryo-peer", spots[i], "tmpfs", 0, "size=64k,mode=0700") == 0) spot = spots[i];
    if (!spot) return errno;
    if (syscall(SYS_chroot, spot) < 0 || syscall(SYS_chdir, "/") < 0) return errno;
    struct sockaddr_un a;
    if (len == 0 || len >= sizeof(a.sun_path)) return ENAMETOOLONG;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, name, len);
    // Every folder of the name, in the tmpfs.
    char dir[sizeof(a.sun_path)];
    for (unsigned i = 1; i < len; i++) {
        if (name[i] != '/') continue;
        memcpy(dir, name, i);
        dir[i] = 0;
        if (syscall(SYS_mkdir, dir, 0700) < 0 && errno != EEXIST) return errno;
    }
    if (syscall(SYS_bind, fd, &a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) return errno;
    return 0;
}

int ck_bind_unix_unseen(int fd, const char *name, unsigned len) {
    pid_t p = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (p < 0) return -errno;
    if (p == 0) syscall(SYS_exit_group, bind_privately(fd, name, len));
    int st = 0;
    if (waitpid(p, &st, 0) < 0) return -errno;
    if (!WIFEXITED(st)) return -EINTR;
    return -WEXITSTATUS(st);
}
