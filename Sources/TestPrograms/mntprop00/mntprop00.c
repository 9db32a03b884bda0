// Shared, slave and private propagation made in its own mount namespace comes back: a shared
// tmpfs with a peer (a bind of it) and a peer of a subdirectory, a slave, a private bind, and
// a slave that is shared itself with a peer of its own. After restore the same peer groups
// and masters show in mountinfo (renumbered, the same graph), and mounts made then propagate
// as they did: into the peers and slaves, not into the private bind, not from a slave back.
// ns flavour only: the mounts are made in the mount namespace zdtm gives the workload.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define BASE "mntprop00.d"
static const char *names[] = { "share", "peer", "subpeer", "slave", "priv", "ss", "ssp" };
#define N (sizeof(names) / sizeof(names[0]))

static void must(int r, const char *what) {
    if (r) fail("%s: %m", what);
}

// The shared:/master: tags of the mount at `path` (the topmost one there).
static void tags(const char *path, long *shared, long *master) {
    char want[PATH_MAX], line[4096];
    if (!realpath(path, want)) { fail("realpath %s: %m", path); return; }
    *shared = *master = 0;
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) { fail("mountinfo: %m"); return; }
    while (fgets(line, sizeof(line), f)) {
        char mp[PATH_MAX];
        if (sscanf(line, "%*d %*d %*s %*s %4095s", mp) != 1 || strcmp(mp, want)) continue;
        long s = 0, m = 0;
        char *p = strstr(line, " shared:"), *q = strstr(line, " master:"), *sep = strstr(line, " - ");
        if (p && p < sep) s = strtol(p + 8, NULL, 10);
        if (q && q < sep) m = strtol(q + 8, NULL, 10);
        *shared = s, *master = m;  // the last line for a place is the top mount
    }
    fclose(f);
}

// The propagation of every mount as a graph: group numbers renumbered by first appearance.
static void graph(char *out, size_t len) {
    long seen[2 * N], n = 0;
    out[0] = 0;
    for (unsigned i = 0; i < N; i++) {
        char path[PATH_MAX];
        long t[2];
        snprintf(path, sizeof(path), BASE "/%s", names[i]);
        tags(path, &t[0], &t[1]);
        for (int k = 0; k < 2; k++) {
            long id = 0;
            if (t[k]) {
                long j = 0;
                while (j < n && seen[j] != t[k]) j++;
                if (j == n) seen[n++] = t[k];
                id = j + 1;
            }
            snprintf(out + strlen(out), len - strlen(out), "%s=%ld", k ? "/master" : " shared", id);
        }
        snprintf(out + strlen(out), len - strlen(out), "(%s)", names[i]);
    }
}

static dev_t dev(const char *path) {
    struct stat st;
    if (stat(path, &st)) { fail("stat %s: %m", path); return 0; }
    return st.st_dev;
}

// After a tmpfs is mounted at BASE/from/dir: whether it shows at BASE/to/dir.
static void propagates(const char *from, const char *dir, const char *to, int expected) {
    char src[PATH_MAX], dst[PATH_MAX], parent[PATH_MAX];
    snprintf(src, sizeof(src), BASE "/%s/%s", from, dir);
    snprintf(dst, sizeof(dst), BASE "/%s/%s", to, dir);
    snprintf(parent, sizeof(parent), BASE "/%s", to);
    int seen = dev(dst) == dev(src) && dev(dst) != dev(parent);
    if (seen != expected) fail("a mount at %s %s at %s", src, seen ? "propagated (it should not)" : "did not propagate", dst);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (mkdir(BASE, 0755) && errno != EEXIST) fail("mkdir: %m");
    must(mount("mntprop00", BASE, "tmpfs", 0, "size=1m"), "mount base (the ns flavour gives a mount namespace)");
    must(mount(NULL, BASE, NULL, MS_PRIVATE, NULL), "base private");
    for (unsigned i = 0; i < N; i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), BASE "/%s", names[i]);
        must(mkdir(p, 0755), "mkdir");
    }
    must(mount("mntprop00s", BASE "/share", "tmpfs", 0, "size=1m"), "mount share");
    for (const char *d = "sub\0x\0y\0z\0"; *d; d += strlen(d) + 1) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), BASE "/share/%s", d);
        must(mkdir(p, 0755), "mkdir in share");
    }
    must(mkdir(BASE "/share/sub/x", 0755), "mkdir sub/x");
    must(mount(NULL, BASE "/share", NULL, MS_SHARED, NULL), "share shared");
    must(mount(BASE "/share", BASE "/peer", NULL, MS_BIND, NULL), "bind peer");
    must(mount(BASE "/share/sub", BASE "/subpeer", NULL, MS_BIND, NULL), "bind subpeer");
    must(mount(BASE "/share", BASE "/slave", NULL, MS_BIND, NULL), "bind slave");
    must(mount(NULL, BASE "/slave", NULL, MS_SLAVE, NULL), "make slave");
    must(mount(BASE "/share", BASE "/priv", NULL, MS_BIND, NULL), "bind priv");
    must(mount(NULL, BASE "/priv", NULL, MS_PRIVATE, NULL), "make private");
    must(mount(BASE "/share", BASE "/ss", NULL, MS_BIND, NULL), "bind ss");
    must(mount(NULL, BASE "/ss", NULL, MS_SLAVE, NULL), "ss slave");
    must(mount(NULL, BASE "/ss", NULL, MS_SHARED, NULL), "ss shared");
    must(mount(BASE "/ss", BASE "/ssp", NULL, MS_BIND, NULL), "bind ssp");
    char before[1024], after[1024];
    graph(before, sizeof(before));
    test_msg("propagation before:%s\n", before);

    test_daemon();
    test_waitsig();

    graph(after, sizeof(after));
    if (strcmp(before, after)) fail("propagation was%s, is%s", before, after);
    // A mount in the shared one reaches its peers and slaves, not the private bind.
    must(mount("mntprop00x", BASE "/share/x", "tmpfs", 0, "size=64k"), "mount x in share");
    propagates("share", "x", "peer", 1);
    propagates("share", "x", "slave", 1);
    propagates("share", "x", "ss", 1);
    propagates("share", "x", "ssp", 1);
    propagates("share", "x", "priv", 0);
    // One in a peer of a subdirectory reaches the shared one where that subdirectory is.
    must(mount("mntprop00sx", BASE "/subpeer/x", "tmpfs", 0, "size=64k"), "mount x in subpeer");
    propagates("subpeer", "x", "share/sub", 1);
    // A slave receives but does not send.
    must(mount("mntprop00y", BASE "/slave/y", "tmpfs", 0, "size=64k"), "mount y in slave");
    propagates("slave", "y", "share", 0);
    // A shared slave sends to its own peer only.
    must(mount("mntprop00z", BASE "/ss/z", "tmpfs", 0, "size=64k"), "mount z in ss");
    propagates("ss", "z", "ssp", 1);
    propagates("ss", "z", "share", 0);
    return test_report();
}
