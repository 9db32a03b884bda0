// Credentials survive: supplementary groups, the three capability sets (with caps dropped from
// some sets only), the bounding set, an ambient capability, keep-caps and dumpable flags.
// CAP_SYS_PTRACE and the uids/gids are left alone so root can still trace us normally.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <grp.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

static const gid_t groups[] = { 5000, 1001, 65534, 1002, 7 };
#define NGROUPS (int)(sizeof(groups) / sizeof(groups[0]))

static int flag(cap_t c, cap_value_t v, cap_flag_t f) {
    cap_flag_value_t x = CAP_CLEAR;
    cap_get_flag(c, v, f, &x);
    return x == CAP_SET;
}

static void check_groups(const char *when) {
    gid_t got[64];
    int n = getgroups(64, got);
    if (n != NGROUPS) { fail("%s: %d supplementary groups, expected %d", when, n, NGROUPS); return; }
    for (int i = 0; i < NGROUPS; i++) {
        int found = 0;
        for (int j = 0; j < n; j++) found |= got[j] == groups[i];
        if (!found) fail("%s: supplementary group %u missing", when, groups[i]);
    }
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (setgroups(NGROUPS, groups)) fail("setgroups: %m");
    check_groups("set-up");

    cap_t c = cap_get_proc();
    if (!c) fail("cap_get_proc: %m");
    // NET_RAW and SYS_TIME leave every set; MKNOD leaves only effective; NET_ADMIN becomes
    // inheritable (and ambient) too; SYS_BOOT leaves the bounding set.
    cap_value_t gone[] = { CAP_NET_RAW, CAP_SYS_TIME }, eff_only = CAP_MKNOD, inh = CAP_NET_ADMIN;
    cap_flag_t all[] = { CAP_EFFECTIVE, CAP_PERMITTED, CAP_INHERITABLE };
    for (int f = 0; f < 3; f++) cap_set_flag(c, all[f], 2, gone, CAP_CLEAR);
    cap_set_flag(c, CAP_EFFECTIVE, 1, &eff_only, CAP_CLEAR);
    int have_inh = flag(c, inh, CAP_PERMITTED);
    if (have_inh) cap_set_flag(c, CAP_INHERITABLE, 1, &inh, CAP_SET);
    if (cap_set_proc(c)) fail("cap_set_proc: %m");
    cap_free(c);
    if (have_inh && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, inh, 0, 0)) fail("ambient raise: %m");
    int bnd_dropped = prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0) == 0;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)) fail("PR_SET_KEEPCAPS: %m");

    cap_t before = cap_get_proc();
    char *txt0 = cap_to_text(before, NULL);
    if (flag(before, CAP_NET_RAW, CAP_PERMITTED) || flag(before, CAP_MKNOD, CAP_EFFECTIVE)) fail("capabilities not dropped: %s", txt0);
    unsigned long long bnd0 = 0;
    for (int v = 0; v <= CAP_LAST_CAP; v++)
        if (prctl(PR_CAPBSET_READ, v, 0, 0, 0) == 1) bnd0 |= 1ULL << v;
    int dump0 = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    test_msg("caps: %s; bounding %#llx; dumpable %d", txt0, bnd0, dump0);
    test_daemon();
    test_waitsig();

    check_groups("after");
    cap_t now = cap_get_proc();
    char *txt1 = cap_to_text(now, NULL);
    if (cap_compare(before, now)) {
        const char *names[] = { "effective", "permitted", "inheritable" };
        for (int v = 0; v <= CAP_LAST_CAP; v++)
            for (int f = 0; f < 3; f++)
                if (flag(before, v, all[f]) != flag(now, v, all[f]))
                    fail("capability %s is %s %s, expected %s (now '%s', expected '%s')", cap_to_name(v),
                         flag(now, v, all[f]) ? "in" : "not in", names[f], flag(before, v, all[f]) ? "set" : "clear", txt1, txt0);
    }
    for (int v = 0; v <= CAP_LAST_CAP; v++) {
        int b = prctl(PR_CAPBSET_READ, v, 0, 0, 0) == 1;
        if (b != !!(bnd0 & (1ULL << v))) fail("bounding set: %s is %s, expected %s", cap_to_name(v), b ? "in" : "out", b ? "out" : "in");
    }
    if (bnd_dropped && prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0) != 0) fail("CAP_SYS_BOOT is back in the bounding set");
    if (have_inh && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, inh, 0, 0) != 1) fail("ambient CAP_NET_ADMIN lost");
    for (int v = 0; v <= CAP_LAST_CAP; v++)
        if (v != inh && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, v, 0, 0) == 1) fail("unexpected ambient %s", cap_to_name(v));
    if (prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0) != 1) fail("keep-caps flag lost");
    int dump1 = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (dump1 != dump0) fail("dumpable %d, expected %d", dump1, dump0);
    return test_report();
}
