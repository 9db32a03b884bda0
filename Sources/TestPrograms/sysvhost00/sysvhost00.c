// A SysV shm segment the workload attaches in an IPC namespace it may not own (the host's in
// the h flavour): after restore it is attached at the same address to the same segment (what
// another attachment writes, it reads) with its bytes; the segment is removed at the end.
// In the ns flavour the namespace is the tree's own and the segment comes back with it.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#define SIZE (4 * 4096)

int main(int argc, char **argv) {
    test_init(argc, argv);
    int id = shmget(IPC_PRIVATE, SIZE, 0600);
    if (id < 0) { fail("shmget: %m"); return test_report(); }
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) { fail("shmat: %m"); shmctl(id, IPC_RMID, NULL); return test_report(); }
    datagen(p, SIZE, 61);
    test_msg("segment id %d at %p\n", id, (void *)p);
    test_daemon();
    test_waitsig();
    datachk_fail("segment", p, SIZE, 61);
    char *q = shmat(id, NULL, 0);
    if (q == (void *)-1) fail("shmat after restore: %m");
    else {
        q[5] = 'x';
        if (p[5] != 'x') fail("the attachment is not the segment %d any more", id);
        shmdt(q);
    }
    if (shmctl(id, IPC_RMID, NULL)) fail("IPC_RMID: %m");
    return test_report();
}
