import ArgumentParser
import Engine
import Foundation
import Glibc

/// `cryo track`: what the tracking keeper holds between incremental snapshots.
struct Track: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the processes whose dirty tracking cryo keeps between snapshots.",
        discussion: "Without --track-store, pre-dump and dump --track-mem leave each process's tracking with a keeper process (one per user; CRYO_TRACK_KEEPER names another, \"off\" disables it). It exits when a final dump takes the tracking, when the tracked processes exit, or after CRYO_TRACK_IDLE seconds (default \(TrackKeeper.defaultIdleSeconds)) with no cryo run using it.",
        subcommands: [TrackList.self, TrackKeeperCommand.self],
        defaultSubcommand: TrackList.self)
}

struct TrackList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List what the keeper tracks (the default).")

    @OptionGroup var log: LogOptions

    func run() throws {
        try log.bootstrap()
        guard let name = TrackKeeper.name else { print("tracking keeper: off (CRYO_TRACK_KEEPER=off)"); return }
        let listing: TrackKeeperClient.Listing
        do {
            guard let client = try TrackKeeperClient.connect(name: name) else {
                print("tracking keeper @\(name): not running, nothing tracked")
                return
            }
            listing = try client.list()
        } catch {
            FileHandle.standardError.write(Data("cryo track: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print("tracking keeper @\(name): pid \(listing.keeperPid), uid \(listing.uid), idle timeout \(listing.idleSeconds) s, \(listing.clients - 1) other run(s) connected, \(listing.tracked.count) process(es) tracked")
        guard !listing.tracked.isEmpty else { return }
        print("PID".padding(8) + "START_TIME".padding(14) + "RANGES".padding(8) + "PAGES_ARMED".padding(13) + "AGE_S".padding(9) + "BACKEND")
        for t in listing.tracked {
            print("\(t.pid)".padding(8) + "\(t.startTime)".padding(14) + "\(t.armed.count)".padding(8) + "\(t.armedPages)".padding(13)
                  + String(format: "%.1f", t.ageSeconds).padding(9) + t.backend.rawValue)
        }
    }
}

/// The keeper itself, started by cryo (hidden: nobody needs to type it).
struct TrackKeeperCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keeper", abstract: "Run the tracking keeper.", shouldDisplay: false)

    @OptionGroup var log: LogOptions
    @Option(name: .customLong("listen-fd"), help: "A listening seqpacket socket to serve (else bind --name).") var listenFd: Int32?
    @Option(name: .customLong("name"), help: "Abstract socket name.") var name: String?
    @Option(name: .customLong("idle"), help: "Seconds without any run connected before the keeper drops everything and exits.") var idle: Int = TrackKeeper.defaultIdleSeconds

    func run() throws {
        try log.bootstrap()
        guard let name = name ?? TrackKeeper.name else { throw ValidationError("no keeper name (CRYO_TRACK_KEEPER=off)") }
        let fd: Int32
        if let listenFd { fd = listenFd } else {
            guard let s = try TrackKeeper.bindListening(name) else {
                FileHandle.standardError.write(Data("cryo track keeper: @\(name) is already served\n".utf8))
                throw ExitCode(1)
            }
            fd = s
        }
        _ = TrackKeeperServer(listenFd: fd, name: name, idleSeconds: Double(max(1, idle))).run()
    }
}

extension String {
    fileprivate func padding(_ n: Int) -> String { count >= n ? self + " " : padding(toLength: n, withPad: " ", startingAt: 0) }
}
