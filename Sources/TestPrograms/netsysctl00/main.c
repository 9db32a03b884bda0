// Network sysctls that write through to others must come back as they were, whatever order
// the restore writes them in. In a network namespace it makes itself (so the host's is never
// touched): all/forwarding=1 then all/accept_redirects=1 (writing forwarding resets
// accept_redirects), IPv6 all/forwarding=1 then default/forwarding=0 and lo/forwarding=0
// (all's value is written through to default and every device), lo's IPv6 mtu below the
// link's, and default/disable_ipv6=1 under all's 0. Each must read the same after SIGTERM.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *settings[][2] = {
    {"ipv4/conf/all/forwarding", "1"},
    {"ipv4/conf/all/accept_redirects", "1"},
    {"ipv4/conf/default/accept_redirects", "0"},
    {"ipv6/conf/all/forwarding", "1"},
    {"ipv6/conf/default/forwarding", "0"},
    {"ipv6/conf/lo/forwarding", "0"},
    {"ipv6/conf/lo/mtu", "1280"},
    {"ipv6/conf/default/disable_ipv6", "1"},
};
#define N (sizeof(settings) / sizeof(settings[0]))

static void put(const char *name, const char *v) {
    char path[256];
    snprintf(path, sizeof(path), "/proc/sys/net/%s", name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(v, f) < 0 || fclose(f)) fail("write %s = %s: %m", path, v);
}

static void get(const char *name, char *v, size_t n) {
    char path[256];
    snprintf(path, sizeof(path), "/proc/sys/net/%s", name);
    FILE *f = fopen(path, "r");
    v[0] = 0;
    if (!f || !fgets(v, (int)n, f)) fail("read %s: %m", path);
    if (f) fclose(f);
    v[strcspn(v, "\n")] = 0;
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (unshare(CLONE_NEWNET)) { fail("unshare(CLONE_NEWNET): %m"); return test_report(); }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq r;
    memset(&r, 0, sizeof(r));
    strcpy(r.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &r)) fail("lo flags: %m");
    r.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &r)) fail("lo up: %m");
    close(s);
    for (size_t i = 0; i < N; i++) put(settings[i][0], settings[i][1]);
    char before[N][64], after[64];
    for (size_t i = 0; i < N; i++) {
        get(settings[i][0], before[i], sizeof(before[i]));
        if (strcmp(before[i], settings[i][1])) fail("%s reads %s after writing %s", settings[i][0], before[i], settings[i][1]);
    }
    test_daemon();
    test_waitsig();
    for (size_t i = 0; i < N; i++) {
        get(settings[i][0], after, sizeof(after));
        if (strcmp(before[i], after)) fail("net.%s was %s, now %s", settings[i][0], before[i], after);
    }
    return test_report();
}
