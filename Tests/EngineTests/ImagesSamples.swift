import Foundation
import Glibc
import CKernel
@testable import Engine

/// Sample images shared by the image tests.
enum ImageSamples {
    /// A plausible one-process image set, as a dump would write it.
    static func write(_ d: ImageDirectory, pid: UInt32 = 4242, pages: Int = 3) throws {
        var inv = Img_InventoryEntry()
        inv.imgVersion = 2
        inv.fdinfoPerID = true
        inv.lsmtype = .noLsm
        try d.write(.inventory, entry: inv)
        var ps = Img_PstreeEntry()
        ps.pid = pid; ps.ppid = 0; ps.pgid = pid; ps.sid = pid; ps.threads = [pid]
        try d.write(.pstree, entry: ps)

        var core = Img_CoreEntry()
        core.mtype = .x8664
        var ti = Img_ThreadInfoX86()
        ti.clearTidAddr_p = 0x7f00_0000_1000
        var gp = Img_UserX86RegsEntry(user_regs_struct())
        gp.ip = 0x55_0000_1234; gp.sp = 0x7ffd_0000_0000; gp.ax = UInt64(bitPattern: -516); gp.origAx = 35
        gp.cs = 0x33; gp.ss = 0x2b; gp.flags = 0x246
        ti.gpregs = gp
        var fp = Img_UserX86FpregsEntry()
        fp.cwd = 0x37f; fp.swd = 0; fp.twd = 0; fp.fop = 0; fp.rip = 0; fp.rdp = 0; fp.mxcsr = 0x1f80; fp.mxcsrMask = 0xffff
        fp.stSpace = Array(repeating: 0, count: 32); fp.xmmSpace = Array(repeating: 7, count: 64); fp.padding = Array(repeating: 0, count: 24)
        var xs = Img_UserX86XsaveEntry()
        xs.xstateBv = 0x602e7
        xs.zmmUpper = Array(repeating: 5, count: 64)
        xs.xtilecfg = Data(repeating: 1, count: 64)
        xs.xsaveArea = Data(repeating: 9, count: 11008)
        fp.xsave = xs
        ti.fpregs = fp
        core.threadInfo = ti
        var tc = Img_TaskCoreEntry()
        tc.taskState = TaskState.alive.rawValue; tc.exitCode = 0; tc.personality = 0; tc.flags = 0
        tc.blkSigset = 0x200; tc.comm = "worker"; tc.umask = 0o22
        var rl = Img_TaskRlimitsEntry()
        rl.rlimits = (0..<16).map { i in var r = Img_RlimitEntry(); r.cur = UInt64(i); r.max = UInt64.max; return r }
        tc.rlimits = rl
        var sa = Img_SaEntry(); sa.sigaction = 0x1234; sa.flags = 0x4000000; sa.restorer = 0x5678; sa.mask = 0
        tc.sigactions = [sa]
        core.tc = tc
        var th = Img_ThreadCoreEntry()
        th.futexRla = 0x7f00_0000_2000; th.futexRlaLen = 24; th.blkSigset = 0x200
        var creds = Img_CredsEntry()
        creds.uid = 0; creds.gid = 0; creds.euid = 0; creds.egid = 0; creds.suid = 0; creds.sgid = 0; creds.fsuid = 0; creds.fsgid = 0
        creds.capEff = [0xffffffff, 0x1ff]; creds.secbits = 0; creds.groups = [0, 10]
        th.creds = creds
        var rseq = Img_RseqEntry(); rseq.rseqAbiPointer = 0x7f00_0000_3000; rseq.rseqAbiSize = 32; rseq.signature = 0x53053053
        th.rseqEntry = rseq
        core.threadCore = th
        try d.write(.core, id: Int(pid), entry: core)

        var ids = Img_TaskKobjIdsEntry(); ids.vmID = 1; ids.filesID = 2; ids.fsID = 3; ids.sighandID = 4
        try d.write(.ids, id: Int(pid), entry: ids)
        var mm = Img_MmEntry()
        mm.mmStartCode = 0x55_0000_0000; mm.mmEndCode = 0x55_0000_1000; mm.mmStartData = 0; mm.mmEndData = 0
        mm.mmStartStack = 0x7ffd_0000_0000; mm.mmStartBrk = 0x56_0000_0000; mm.mmBrk = 0x56_0000_1000
        mm.mmArgStart = 1; mm.mmArgEnd = 2; mm.mmEnvStart = 3; mm.mmEnvEnd = 4; mm.exeFileID = 1
        var vma = Img_VmaEntry(); vma.start = 0x7f00_0000_0000; vma.end = 0x7f00_0000_4000; vma.pgoff = 0; vma.shmid = 0
        vma.prot = 3; vma.flags = 0x22; vma.status = 0x3; vma.fd = -1
        mm.vmas = [vma]
        mm.mmSavedAuxv = [33, 0x7ffd_0000_1000, 0, 0]
        try d.write(.mm, id: Int(pid), entry: mm)
        let pe = Img_PagemapEntry(vaddr: 0x7f00_0000_0000, nrPages: UInt32(pages), flags: .present)
        try d.writePagemap(pid: Int32(pid), pagesID: 1, entries: [pe])
        let w = try d.pagesWriter(id: 1)
        try w.write([UInt8](repeating: 0xab, count: pages * 4096))
        try w.finish()

        var reg = Img_RegFileEntry(); reg.id = 1; reg.flags = 2; reg.pos = 10; reg.name = "/tmp/some file"
        var fown = Img_FownEntry(); fown.uid = 0; fown.euid = 0; fown.signum = 0; fown.pidType = 0; fown.pid = 0
        reg.fown = fown
        var fe = Img_FileEntry(); fe.type = .reg; fe.id = 1; fe.reg = reg
        try d.write(.files, entry: fe)
        var fi = Img_FdinfoEntry(); fi.id = 1; fi.flags = 0; fi.type = .reg; fi.fd = 3
        try d.write(.fdinfo, id: 2, entries: [fi])
        var fs = Img_FsEntry(); fs.cwdID = 1; fs.rootID = 1; fs.umask = 0o22
        try d.write(.fs, id: Int(pid), entry: fs)
        try d.write(.sigacts, id: Int(pid), entries: [sa, sa])
    }

    /// A fresh directory under /tmp; the caller removes it.
    static func tempDir(_ tag: String = "img") -> String {
        var t = Array("/tmp/cryo-\(tag)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&t) else { fatalError("mkdtemp: \(errno)") }
        return String(cString: p)
    }

    /// Runs a program, returning its exit status and its output (stdout and stderr together).
    static func run(_ path: String, _ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static let crit = "/usr/bin/crit"
}
