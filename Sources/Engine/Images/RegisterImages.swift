import CKernel

/// user_regs_struct <-> CRIU's UserX86RegsEntry, field by field.
extension Img_UserX86RegsEntry {
    public init(_ r: user_regs_struct) {
        self.init()
        r15 = r.r15; r14 = r.r14; r13 = r.r13; r12 = r.r12; bp = r.rbp; bx = r.rbx
        r11 = r.r11; r10 = r.r10; r9 = r.r9; r8 = r.r8; ax = r.rax; cx = r.rcx; dx = r.rdx
        si = r.rsi; di = r.rdi; origAx = r.orig_rax; ip = r.rip; cs = r.cs; flags = r.eflags
        sp = r.rsp; ss = r.ss; fsBase = r.fs_base; gsBase = r.gs_base; ds = r.ds; es = r.es; fs = r.fs; gs = r.gs
        mode = .native
    }

    public var userRegs: user_regs_struct {
        var r = user_regs_struct()
        r.r15 = r15; r.r14 = r14; r.r13 = r13; r.r12 = r12; r.rbp = bp; r.rbx = bx
        r.r11 = r11; r.r10 = r10; r.r9 = r9; r.r8 = r8; r.rax = ax; r.rcx = cx; r.rdx = dx
        r.rsi = si; r.rdi = di; r.orig_rax = origAx; r.rip = ip; r.cs = cs; r.eflags = flags
        r.rsp = sp; r.ss = ss; r.fs_base = fsBase; r.gs_base = gsBase; r.ds = ds; r.es = es; r.fs = fs; r.gs = gs
        return r
    }
}
