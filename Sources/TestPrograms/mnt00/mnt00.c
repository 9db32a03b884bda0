// Mounts the tree made in its own mount namespace come back: a tmpfs with its contents (a
// file, a directory, a symlink, modes) and its options (size, mode, nosuid), a bind of a
// directory of that tmpfs, a read-only bind of a host directory, and a bind of a host file.
// ns flavour only: the mounts are made in the mount namespace zdtm gives the workload.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) fail("write %s: %m", path);
    close(fd);
}

static void expect(const char *path, const char *text) {
    char buf[256] = { 0 };
    int fd = open(path, O_RDONLY);
    if (fd < 0) { fail("open %s: %m", path); return; }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0 || strcmp(buf, text)) fail("%s holds '%s', expected '%s'", path, buf, text);
}

static void same(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) || stat(b, &sb)) { fail("stat %s or %s: %m", a, b); return; }
    if (sa.st_dev != sb.st_dev || sa.st_ino != sb.st_ino) fail("%s and %s are no longer the same file", a, b);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    const char *dirs[] = { "mnt00.tmp", "mnt00.bind", "mnt00.src", "mnt00.ro" };
    for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (mkdir(dirs[i], 0755) && errno != EEXIST) fail("mkdir %s: %m", dirs[i]);
    put("mnt00.src/host", "from the host");
    put("mnt00.srcfile", "a host file");
    put("mnt00.file", "");
    if (mount("mnt00", "mnt00.tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=750"))
        fail("mount tmpfs: %m (the ns flavour gives a mount namespace)");
    put("mnt00.tmp/data", "tmpfs contents");
    if (mkdir("mnt00.tmp/sub", 0711)) fail("mkdir: %m");
    put("mnt00.tmp/sub/inner", "bound dir");
    if (symlink("data", "mnt00.tmp/link")) fail("symlink: %m");
    if (mount("mnt00.tmp/sub", "mnt00.bind", NULL, MS_BIND, NULL)) fail("bind dir: %m");
    if (mount("mnt00.src", "mnt00.ro", NULL, MS_BIND, NULL) ||
        mount(NULL, "mnt00.ro", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOEXEC, NULL)) fail("read-only bind: %m");
    if (mount("mnt00.srcfile", "mnt00.file", NULL, MS_BIND, NULL)) fail("bind file: %m");
    struct stat tmp0, cwd0;
    stat("mnt00.tmp", &tmp0);
    stat(".", &cwd0);

    test_daemon();
    test_waitsig();

    expect("mnt00.tmp/data", "tmpfs contents");
    expect("mnt00.tmp/sub/inner", "bound dir");
    expect("mnt00.bind/inner", "bound dir");
    same("mnt00.bind/inner", "mnt00.tmp/sub/inner");
    expect("mnt00.ro/host", "from the host");
    same("mnt00.ro/host", "mnt00.src/host");
    expect("mnt00.file", "a host file");
    same("mnt00.file", "mnt00.srcfile");
    char link[64] = { 0 };
    if (readlink("mnt00.tmp/link", link, sizeof(link) - 1) < 0 || strcmp(link, "data")) fail("symlink reads '%s'", link);
    struct stat st, sub;
    if (stat("mnt00.tmp", &st) || stat("mnt00.tmp/sub", &sub)) fail("stat: %m");
    if ((st.st_mode & 07777) != 0750) fail("tmpfs root mode %o, expected 750", st.st_mode & 07777);
    if ((sub.st_mode & 07777) != 0711) fail("tmpfs dir mode %o, expected 711", sub.st_mode & 07777);
    if (st.st_dev == cwd0.st_dev) fail("mnt00.tmp is no longer a filesystem of its own");
    struct statvfs tv, rv;
    if (statvfs("mnt00.tmp", &tv) || statvfs("mnt00.ro", &rv)) fail("statvfs: %m");
    if (!(tv.f_flag & ST_NOSUID) || !(tv.f_flag & ST_NODEV) || (tv.f_flag & ST_RDONLY)) fail("tmpfs flags %#lx, expected nosuid,nodev,rw", tv.f_flag);
    if (tv.f_blocks * tv.f_frsize != 1024 * 1024) fail("tmpfs size %lu bytes, expected 1 MiB", (unsigned long)(tv.f_blocks * tv.f_frsize));
    if (!(rv.f_flag & ST_RDONLY) || !(rv.f_flag & ST_NOEXEC)) fail("read-only bind flags %#lx, expected ro,noexec", rv.f_flag);
    if (open("mnt00.ro/new", O_WRONLY | O_CREAT, 0644) >= 0 || errno != EROFS) fail("a write into the read-only bind did not fail with EROFS");
    put("mnt00.tmp/after", "written after restore");
    expect("mnt00.tmp/after", "written after restore");
    return test_report();
}
