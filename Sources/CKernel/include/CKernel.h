// CKernel: the few things Swift cannot do itself.
// - wrappers for variadic libc entry points (ptrace, ioctl, prctl, syscall, fcntl, open)
// - wait-status macros, which Swift does not import
// - kernel ABI definitions newer than this machine's headers (PAGEMAP_SCAN, uffd feature bits)
// Keep it small: anything that can be written in Swift lives in Engine.
#ifndef CKERNEL_H
#define CKERNEL_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/uio.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include "ckstream.h"

long ck_ptrace(long request, pid_t pid, void *addr, void *data);
long ck_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
int ck_ioctl(int fd, unsigned long request, void *arg);
int ck_ioctl_long(int fd, unsigned long request, unsigned long arg);
int ck_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
int ck_fcntl_int(int fd, int cmd, int arg);
int ck_open(const char *path, int flags, unsigned int mode);
int ck_errno(void);
// posix_spawn_file_actions_addchdir_np is a GNU extension Swift does not see.
int ck_spawn_addchdir(posix_spawn_file_actions_t *fa, const char *path);
// ... and posix_spawn_file_actions_addclosefrom_np: children get no fd of ours past stderr.
int ck_spawn_addclosefrom(posix_spawn_file_actions_t *fa, int from);

// wait(2) status decoding
/// A new pty: the master fd (or -errno), the slave's path in `name`.
int ck_open_pty(char *name, size_t len);
int ck_wifexited(int status);
int ck_wexitstatus(int status);
int ck_wifsignaled(int status);
int ck_wtermsig(int status);
int ck_wifstopped(int status);
int ck_wstopsig(int status);
// PTRACE_EVENT_* carried in the high byte of a stop status
int ck_wptrace_event(int status);

// ---- ptrace requests and notes that older headers may lack ----
struct ck_rseq_configuration {
    uint64_t rseq_abi_pointer;
    uint32_t rseq_abi_size;
    uint32_t signature;
    uint32_t flags;
    uint32_t pad;
};
struct ck_peeksiginfo_args {
    uint64_t off;
    uint32_t flags;
    int32_t nr;
};
#define CK_NT_PRSTATUS 1
#define CK_NT_PRFPREG 2
#define CK_NT_X86_XSTATE 0x202

// ---- PAGEMAP_SCAN (Linux 6.7) ----
#define CK_PAGE_IS_WPALLOWED (1ULL << 0)
#define CK_PAGE_IS_WRITTEN   (1ULL << 1)
#define CK_PAGE_IS_FILE      (1ULL << 2)
#define CK_PAGE_IS_PRESENT   (1ULL << 3)
#define CK_PAGE_IS_SWAPPED   (1ULL << 4)
#define CK_PAGE_IS_PFNZERO   (1ULL << 5)
#define CK_PAGE_IS_HUGE      (1ULL << 6)
#define CK_PAGE_IS_SOFT_DIRTY (1ULL << 7)
#define CK_PM_SCAN_WP_MATCHING   (1ULL << 0)
#define CK_PM_SCAN_CHECK_WPASYNC (1ULL << 1)

struct ck_page_region {
    uint64_t start;
    uint64_t end;
    uint64_t categories;
};

struct ck_pm_scan_arg {
    uint64_t size;
    uint64_t flags;
    uint64_t start;
    uint64_t end;
    uint64_t walk_end;
    uint64_t vec;
    uint64_t vec_len;
    uint64_t max_pages;
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
};
// _IOWR('f', 16, struct pm_scan_arg)
#define CK_PAGEMAP_SCAN 0xc0606610UL

// ---- userfaultfd ----
#define CK_UFFD_API 0xAAULL
#define CK_UFFD_FEATURE_WP_UNPOPULATED (1ULL << 13)
#define CK_UFFD_FEATURE_POISON         (1ULL << 14)
#define CK_UFFD_FEATURE_WP_ASYNC       (1ULL << 15)
#define CK_UFFD_FEATURE_MOVE           (1ULL << 16)
#define CK_UFFD_USER_MODE_ONLY 1
struct ck_uffdio_api { uint64_t api; uint64_t features; uint64_t ioctls; };
struct ck_uffdio_range { uint64_t start; uint64_t len; };
struct ck_uffdio_register { struct ck_uffdio_range range; uint64_t mode; uint64_t ioctls; };
struct ck_uffdio_writeprotect { struct ck_uffdio_range range; uint64_t mode; };
struct ck_uffdio_copy { uint64_t dst; uint64_t src; uint64_t len; uint64_t mode; int64_t copy; };
#define CK_UFFDIO_REGISTER_MODE_MISSING 1ULL
#define CK_UFFDIO_REGISTER_MODE_WP      2ULL
#define CK_UFFDIO_REGISTER_MODE_MINOR   4ULL
#define CK_UFFDIO_API        0xc018aa3fUL
#define CK_UFFDIO_REGISTER   0xc020aa00UL
#define CK_UFFDIO_UNREGISTER 0x8010aa01UL
#define CK_UFFDIO_WRITEPROTECT 0xc018aa06UL
#define CK_UFFDIO_COPY       0xc028aa03UL
// Lazy restore (MISSING mode) and its non-cooperative events.
#define CK_UFFD_FEATURE_EVENT_FORK   (1ULL << 1)
#define CK_UFFD_FEATURE_EVENT_REMAP  (1ULL << 2)
#define CK_UFFD_FEATURE_EVENT_REMOVE (1ULL << 3)
#define CK_UFFD_FEATURE_EVENT_UNMAP  (1ULL << 6)
#define CK_UFFD_EVENT_PAGEFAULT 0x12
#define CK_UFFD_EVENT_FORK      0x13
#define CK_UFFD_EVENT_REMAP     0x14
#define CK_UFFD_EVENT_REMOVE    0x15
#define CK_UFFD_EVENT_UNMAP     0x16
struct ck_uffdio_zeropage { struct ck_uffdio_range range; uint64_t mode; int64_t zeropage; };
#define CK_UFFDIO_ZEROPAGE   0xc020aa04UL
#define CK_UFFDIO_WAKE       0x8010aa02UL
// ioctl on /dev/userfaultfd: a userfaultfd for the caller's mm (permission checked at open).
#define CK_USERFAULTFD_IOC_NEW 0xaa00UL

// ---- SCM_RIGHTS (the CMSG_* macros do not import into Swift) ----
// Sends `n` fds in one message with a one-byte payload. Returns 0 or -errno.
int ck_send_fds(int sock, const int *fds, int n);
// Receives up to `max` fds from one message into `fds`; returns how many, or -errno.
// Fails with -EMSGSIZE if the control data was truncated.
int ck_recv_fds(int sock, int *fds, int max);

// recvmsg(MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | extra) into buf. A peek installs the
// message's SCM_RIGHTS fds in the caller: they are stored in fds (room for 253, the kernel's
// SCM_MAX_FD), their number in *nfds; the caller owns and closes them. Returns bytes or
// -errno (-EMSGSIZE if the control data was truncated; then no fd is left open).
long ck_peek(int sock, void *buf, unsigned long len, int extra, int *fds, int *nfds);
// ck_peek that also gives the sender's address (name, *namelen: 0 for an unnamed sender) and
// whether a message came at all (*msg: 1 when SCM_CREDENTIALS came, which SO_PASSCRED adds to
// every message but not to end-of-file).
// recvmsg (not a peek) of one message with its SCM_RIGHTS fds, as ck_peek.
long ck_recv_with_fds(int sock, void *buf, unsigned long len, int *fds, int *nfds);
long ck_peek_from(int sock, void *buf, unsigned long len, int extra, int *fds, int *nfds,
                  void *name, unsigned int *namelen, int *msg);
// sendmsg of len bytes with n (<= 253) fds as SCM_RIGHTS (none if n is 0), to addr if given.
// Returns the bytes sent or -errno.
long ck_send_with_fds(int sock, const void *buf, unsigned long len, const int *fds, int n,
                      const void *addr, unsigned int addrlen, int flags);

// ---- clone3 ----
struct ck_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

// Fork a child with clone3(set_tid = {pid}) (want_pid 0: any pid) that only loops in
// pause() until it is seized; it runs no Swift. Returns the pid, or -errno.
pid_t ck_clone3_stopped_child(pid_t want_pid, uint64_t flags);
// bind(fd) to the path name (len bytes, no NUL needed) in a tmpfs of a private mount namespace,
// so no file is made: 0 or -errno (unixpeer.c).
int ck_bind_unix_unseen(int fd, const char *name, unsigned len);
// As above, the child born in a new time namespace with these offsets (timens.c).
pid_t ck_clone3_stopped_child_timens(pid_t want_pid, uint64_t flags, long long mono_s, long long mono_ns,
                                     long long boot_s, long long boot_ns);

// Fork a child that calls unshare(flags) and exits with 0 or the errno. Returns the
// child's exit code, or -errno if the fork failed. Used by `cryo check`.
int ck_try_unshare(int flags);

// Fork a child that drops to uid/gid (no supplementary groups), connects a seqpacket socket to
// addr, sends req and waits up to 5 s for a reply; it runs no Swift. Returns the child's exit
// code: 0 a reply came, 1 the peer closed without one, 2 connect failed, 3 could not change
// uid, 4 another error; or -errno if the fork failed. Tests use it to reach a socket as another user.
int ck_seqpacket_request_as(unsigned int uid, unsigned int gid, const void *addr, unsigned int addrlen,
                            const void *req, unsigned long reqlen);

// zdtm's ns flavour: forks a starter that makes an init in new pid, mount (proc mounted
// again), network (lo up), UTS and IPC namespaces, which runs `bin argv` (the workload's
// starter) and then reaps; the starter writes the init's pid to `pidfile` (through `pidtmp`)
// and exits with the workload starter's status. Returns the starter's pid or -errno.
pid_t ck_ns_launch(const char *bin, char *const argv[], const char *cwd, const char *log,
                   const char *pidfile, const char *pidtmp);
// uns: the same in a new user namespace mapped by `idmap` ("0 100000 65536\n"), owning the others.
pid_t ck_uns_launch(const char *bin, char *const argv[], const char *cwd, const char *log,
                    const char *pidfile, const char *pidtmp, const char *idmap);

#endif
