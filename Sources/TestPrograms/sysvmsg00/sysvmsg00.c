// SysV message queues of the tree's own IPC namespace come back with the same ids, keys,
// modes, byte limit and every queued message (type and text, in order), and one that is
// empty. The namespace's msg limits come back too, msgmax lowered below queued messages.
// ns flavour only: it changes the IPC namespace zdtm gives it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <unistd.h>

#define KEY 0x3e3e0001
#define COUNT 20

struct m { long type; char text[16384]; };
static struct m msg;

static size_t len_of(int i) { return i == 0 ? 0 : (size_t)(i * 797) % 12000 + 1; }

int main(int argc, char **argv) {
    test_init(argc, argv);
    FILE *f = fopen("/proc/sys/kernel/msgmax", "w");
    if (!f || fprintf(f, "16384\n") < 0 || fclose(f)) fail("write msgmax: %m");
    f = fopen("/proc/sys/kernel/msgmnb", "w");
    if (!f || fprintf(f, "200000\n") < 0 || fclose(f)) fail("write msgmnb: %m");
    int q = msgget(KEY, IPC_CREAT | IPC_EXCL | 0620);
    int e = msgget(IPC_PRIVATE, 0600);
    if (q < 0 || e < 0) { fail("msgget: %m"); return test_report(); }
    struct msqid_ds ds;
    if (msgctl(q, IPC_STAT, &ds)) fail("IPC_STAT: %m");
    ds.msg_qbytes = 150000;
    if (msgctl(q, IPC_SET, &ds)) fail("IPC_SET: %m");
    for (int i = 0; i < COUNT; i++) {
        msg.type = 1 + (i * 7) % 5;
        datagen(msg.text, len_of(i), 100 + i);
        if (msgsnd(q, &msg, len_of(i), IPC_NOWAIT)) fail("msgsnd %d: %m", i);
    }
    // Lowered below some queued messages: they stay, and must come back.
    f = fopen("/proc/sys/kernel/msgmax", "w");
    if (!f || fprintf(f, "4096\n") < 0 || fclose(f)) fail("write msgmax: %m");
    test_daemon();
    test_waitsig();
    if (msgget(KEY, 0) != q) fail("key %#x names id %d, expected %d", KEY, msgget(KEY, 0), q);
    if (msgctl(q, IPC_STAT, &ds)) { fail("IPC_STAT after restore: %m"); return test_report(); }
    if (ds.msg_qnum != COUNT || ds.msg_qbytes != 150000 || (ds.msg_perm.mode & 0777) != 0620)
        fail("%lu messages, qbytes %lu, mode %o", (unsigned long)ds.msg_qnum, (unsigned long)ds.msg_qbytes, ds.msg_perm.mode & 0777);
    if (msgctl(e, IPC_STAT, &ds) || ds.msg_qnum != 0) fail("the empty queue %d: %m or %lu messages", e, (unsigned long)ds.msg_qnum);
    for (int i = 0; i < COUNT; i++) {
        ssize_t n = msgrcv(q, &msg, sizeof(msg.text), 0, IPC_NOWAIT);
        if (n < 0) { fail("message %d: %m", i); break; }
        if ((size_t)n != len_of(i) || msg.type != 1 + (i * 7) % 5) fail("message %d: type %ld, %zd bytes; expected %ld, %zu", i, msg.type, n, 1L + (i * 7) % 5, len_of(i));
        else if (n && datachk(msg.text, n, 100 + i) >= 0) fail("message %d: text changed", i);
    }
    f = fopen("/proc/sys/kernel/msgmax", "r");
    int mm = 0;
    if (!f || fscanf(f, "%d", &mm) != 1 || mm != 4096) fail("msgmax is %d, expected 4096", mm);
    if (f) fclose(f);
    return test_report();
}
