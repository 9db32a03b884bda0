// membarrier registrations come back: the registered expedited barriers still work, the
// unregistered one is still refused, and the registration mask reads the same.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif

static int mb(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

int main(int argc, char **argv) {
    test_init(argc, argv);
    if (mb(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)) fail("REGISTER_PRIVATE_EXPEDITED: %m");
    if (mb(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)) fail("REGISTER_GLOBAL_EXPEDITED: %m");
    int want = mb(MEMBARRIER_CMD_GET_REGISTRATIONS);
    if (want < 0) fail("GET_REGISTRATIONS: %m");
    if (mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != -1 || errno != EPERM) fail("SYNC_CORE barrier worked before its registration");
    test_daemon();
    test_waitsig();
    int got = mb(MEMBARRIER_CMD_GET_REGISTRATIONS);
    if (got != want) fail("registrations 0x%x, were 0x%x", got, want);
    if (mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED)) fail("PRIVATE_EXPEDITED barrier: %m (registration lost)");
    if (mb(MEMBARRIER_CMD_GLOBAL_EXPEDITED)) fail("GLOBAL_EXPEDITED barrier: %m");
    if (mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != -1 || errno != EPERM) fail("SYNC_CORE barrier works without its registration");
    return test_report();
}
