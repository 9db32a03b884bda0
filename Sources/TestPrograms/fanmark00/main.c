// fanotify: a group (FAN_CLASS_NOTIF, non-blocking) with inode marks on two files, one with
// an ignored mask that survives modification. After restore the group's fdinfo shows the same
// flags and marks, nothing is queued, and writing or opening the files delivers the events
// the marks ask for, each naming the right file.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

static void marks(int fd, char *out, size_t size) {
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    out[0] = 0;
    if (!f) { fail("open %s: %m", path); return; }
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "fanotify", 8) && strlen(out) + strlen(line) < size) strcat(out, line);
    fclose(f);
}

// One event, which must carry `mask` bits and name the file with inode `ino`.
static void expect(int fd, unsigned long long mask, ino_t ino, const char *what) {
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < (ssize_t)sizeof(struct fanotify_event_metadata)) { fail("%s: no event (%zd, %m)", what, n); return; }
    unsigned long long got = 0;
    for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
        struct stat st;
        if (m->fd >= 0) {
            if (fstat(m->fd, &st) == 0 && st.st_ino != ino) fail("%s: event names inode %lu, expected %lu", what, (unsigned long)st.st_ino, (unsigned long)ino);
            close(m->fd);
        }
        got |= m->mask;
    }
    if ((got & mask) != mask) fail("%s: events 0x%llx, expected 0x%llx", what, got, mask);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
    if (fd < 0) fail("fanotify_init: %m");
    int a = open("fanmark.a", O_CREAT | O_RDWR | O_TRUNC, 0644), b = open("fanmark.b", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (a < 0 || b < 0) fail("create: %m");
    struct stat sa, sb;
    fstat(a, &sa); fstat(b, &sb);
    close(a); close(b);
    if (fanotify_mark(fd, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, "fanmark.a")) fail("mark a: %m");
    if (fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, "fanmark.b")) fail("mark b: %m");
    if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_CLOSE_NOWRITE, AT_FDCWD, "fanmark.b"))
        fail("ignore on b: %m");
    static char before[4096], after[4096];
    marks(fd, before, sizeof(before));
    test_daemon();
    test_waitsig();
    marks(fd, after, sizeof(after));
    if (strcmp(before, after)) fail("fdinfo changed:\n%s-> \n%s", before, after);
    char buf[256];
    if (read(fd, buf, sizeof(buf)) >= 0 || errno != EAGAIN) fail("events queued after restore");
    a = open("fanmark.a", O_WRONLY);
    if (a < 0 || write(a, "x", 1) != 1) fail("write a: %m");
    close(a);
    expect(fd, FAN_MODIFY | FAN_CLOSE_WRITE, sa.st_ino, "write to a");
    b = open("fanmark.b", O_RDONLY);
    if (b < 0) fail("open b: %m");
    close(b);  // FAN_CLOSE_NOWRITE is ignored on b, and not asked for
    expect(fd, FAN_OPEN, sb.st_ino, "open of b");
    if (read(fd, buf, sizeof(buf)) >= 0 || errno != EAGAIN) fail("an event beyond those asked for");
    unlink("fanmark.a"); unlink("fanmark.b");
    return test_report();
}
