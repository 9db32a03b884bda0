// An inotify instance keeps its watches with their watch descriptors (including a gap left
// by a removed watch) and masks: new events come with the right wd and name.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    mkdir("inotify00.dir", 0755);
    unlink("inotify00.dir/new");
    int f = open("inotify00.file", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int gone = open("inotify00.gone", O_RDWR | O_CREAT | O_TRUNC, 0644);
    close(gone);
    int in = inotify_init1(IN_NONBLOCK);
    if (in < 0 || f < 0) fail("inotify_init1/open: %m");
    int wd_dir = inotify_add_watch(in, "inotify00.dir", IN_CREATE | IN_DELETE);
    int wd_gone = inotify_add_watch(in, "inotify00.gone", IN_ALL_EVENTS);
    int wd_file = inotify_add_watch(in, "inotify00.file", IN_MODIFY);
    if (wd_dir < 0 || wd_gone < 0 || wd_file < 0) fail("inotify_add_watch: %m");
    inotify_rm_watch(in, wd_gone);
    char buf[4096] __attribute__((aligned(8)));
    while (read(in, buf, sizeof(buf)) > 0) {}  // the IN_IGNORED of the removal
    test_daemon();
    test_waitsig();
    // Adding a watch on a watched inode returns its existing wd.
    int again = inotify_add_watch(in, "inotify00.file", IN_MODIFY);
    if (again != wd_file) fail("inotify00.file is watched as wd %d, expected %d", again, wd_file);
    again = inotify_add_watch(in, "inotify00.dir", IN_CREATE | IN_DELETE);
    if (again != wd_dir) fail("inotify00.dir is watched as wd %d, expected %d", again, wd_dir);
    ssize_t n = read(in, buf, sizeof(buf));
    if (n != -1 || errno != EAGAIN) fail("%zd bytes of events queued before any change", n);
    close(open("inotify00.dir/new", O_CREAT | O_WRONLY, 0644));
    if (write(f, "x", 1) != 1) fail("write: %m");
    n = read(in, buf, sizeof(buf));
    int created = 0, modified = 0;
    for (char *p = buf; n > 0 && p < buf + n;) {
        struct inotify_event *e = (struct inotify_event *)p;
        if (e->wd == wd_dir && (e->mask & IN_CREATE) && e->len && !strcmp(e->name, "new")) created++;
        else if (e->wd == wd_file && (e->mask & IN_MODIFY)) modified++;
        else fail("unexpected event wd %d mask %#x name '%s'", e->wd, e->mask, e->len ? e->name : "");
        p += sizeof(*e) + e->len;
    }
    if (created != 1 || modified != 1) fail("events: %d creations in the dir, %d modifications of the file; expected one each", created, modified);
    unlink("inotify00.dir/new");
    return test_report();
}
