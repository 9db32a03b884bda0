// Sharing of open file descriptions across a fork: a file opened before the fork is one
// description in parent and child, so after restore an offset moved by one is seen by the
// other; the same file opened separately in each stays separate. A pipe and the shared file
// are also dup'ed in the child, which must stay the same description.
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    test_init(argc, argv);
    int w = open("file01.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (w < 0) fail("open: %m");
    char data[4096];
    datagen(data, sizeof(data), 7);
    if (write(w, data, sizeof(data)) != sizeof(data)) fail("write: %m");
    close(w);
    int shared = open("file01.data", O_RDONLY);
    lseek(shared, 100, SEEK_SET);
    int sync[2];
    if (pipe(sync)) fail("pipe: %m");
    pid_t child = test_fork();
    if (child == 0) {
        int own = open("file01.data", O_RDONLY);
        lseek(own, 500, SEEK_SET);
        int dup_shared = dup(shared);
        test_waitsig();
        // After restore: move the shared offset by 1000 through the dup, tell the parent.
        char b[1000];
        int bad = read(dup_shared, b, sizeof(b)) != sizeof(b) || memcmp(b, data + 100, sizeof(b));
        bad |= (lseek(own, 0, SEEK_CUR) != 500) << 1;
        bad |= (lseek(shared, 0, SEEK_CUR) != 1100) << 2;
        char c = (char)bad;
        write(sync[1], &c, 1);
        _exit(0);
    }
    int own = open("file01.data", O_RDONLY);
    lseek(own, 3000, SEEK_SET);
    test_daemon();
    test_waitsig();
    if (lseek(shared, 0, SEEK_CUR) != 100) fail("shared offset %ld before the child moved it, expected 100", (long)lseek(shared, 0, SEEK_CUR));
    kill(child, SIGTERM);
    char verdict = -1;
    if (read(sync[0], &verdict, 1) != 1) fail("the child sent no verdict");
    else if (verdict & 1) fail("the child read the wrong bytes through the shared description");
    else if (verdict & 2) fail("the child's own description lost its offset");
    else if (verdict & 4) fail("in the child, the dup and the inherited fd are no longer one description");
    int st;
    waitpid(child, &st, 0);
    if (lseek(shared, 0, SEEK_CUR) != 1100) fail("shared offset is %ld after the child read 1000 bytes from 100: the description is not shared", (long)lseek(shared, 0, SEEK_CUR));
    if (lseek(own, 0, SEEK_CUR) != 3000) fail("the parent's own description moved to %ld", (long)lseek(own, 0, SEEK_CUR));
    return test_report();
}
