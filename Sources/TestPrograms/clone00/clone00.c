// A child made by clone(CLONE_FILES | CLONE_FS) without CLONE_VM shares the parent's fd table
// and fs state: after restore an fd the child opens appears in the parent, a dup the parent
// makes appears in the child, and the child's chdir and umask move the parent's.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int go;
static void on_usr1(int s) { (void)s; go = 1; }

static int child(void *arg) {
    (void)arg;
    while (!go) usleep(1000);  // no pause(): a signal between the check and the call would be missed
    // After restore: open a file (fd shared), move to a new folder, change the umask.
    int fd = open("clone00.child", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) _exit(2);
    if (write(fd, "child", 5) != 5) _exit(3);
    if (mkdir("clone00.dir", 0700) && access("clone00.dir", F_OK)) _exit(4);
    if (chdir("clone00.dir")) _exit(5);
    umask(0027);
    // Report the fd number through the shared table: it is 100, which the parent reads.
    if (dup2(fd, 100) != 100) _exit(6);
    _exit(fcntl(200, F_GETFD) >= 0 ? 0 : 7);  // the parent's dup made before the signal
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    signal(SIGUSR1, on_usr1);
    char *stack = malloc(256 * 1024);
    char here[4096];
    if (!getcwd(here, sizeof(here))) fail("getcwd: %m");
    umask(0022);
    pid_t c = clone(child, stack + 256 * 1024, CLONE_FILES | CLONE_FS | SIGCHLD, NULL);
    if (c < 0) fail("clone: %m");
    test_daemon();
    test_waitsig();
    if (dup2(0, 200) != 200) fail("dup2: %m");
    kill(c, SIGUSR1);
    int st;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st)) { fail("child: status %#x", st); return test_report(); }
    if (WEXITSTATUS(st) == 7) fail("the child does not see the parent's new fd 200: fd table no longer shared");
    else if (WEXITSTATUS(st)) fail("the child failed at step %d", WEXITSTATUS(st));
    char buf[8] = { 0 };
    if (pread(100, buf, 5, 0) != 5 || strcmp(buf, "child")) fail("fd 100 the child opened is not in the parent's table");
    char now[4096];
    if (!getcwd(now, sizeof(now)) || strcmp(now + strlen(now) - strlen("/clone00.dir"), "/clone00.dir"))
        fail("the child's chdir did not move the parent (cwd %s): fs no longer shared", now);
    mode_t m = umask(0022);
    if (m != 0027) fail("umask %03o after the child set 027: fs no longer shared", m);
    return test_report();
}
