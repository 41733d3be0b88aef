import Foundation

/// What one run of the built `ckpt` binary printed and returned.
struct CkptRun {
    var status: Int32
    var stdout: String
    var stderr: String
    var stderrLines: [Substring] { stderr.split(separator: "\n") }
}

/// Runs the built `ckpt` binary in the repository root, reading both pipes while it runs (so
/// large output cannot deadlock).
enum RunCkpt {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var binary: String {
        let candidates = [Bundle.main.bundleURL.appendingPathComponent("ckpt").path,
                          root.appendingPathComponent(".build/debug/ckpt").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }

    /// Runs `ckpt args` under a shell that first runs `setup` (`ulimit -v 400000`), so limits
    /// apply to ckpt alone; killed after `seconds` (exit status 124), so a hang fails the test
    /// instead of stopping the suite.
    static func run(_ args: [String], under setup: String, seconds: Int = 300) throws -> CkptRun {
        try run(args, executable: "/usr/bin/timeout",
                prefix: [String(seconds), "/bin/sh", "-c", setup + "; exec \"$0\" \"$@\"", binary])
    }

    /// Runs `ckpt args` under `/usr/bin/time`; returns the run and its peak resident memory in KiB.
    static func measured(_ args: [String]) throws -> (run: CkptRun, peakKiB: Int) {
        var r = try run(args, executable: "/usr/bin/time", prefix: ["-f", "peak-rss-kib %M", binary])
        var lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard let last = lines.popLast(), last.hasPrefix("peak-rss-kib "), let kib = Int(last.dropFirst("peak-rss-kib ".count)) else {
            throw NSError(domain: "RunCkpt", code: 1, userInfo: [NSLocalizedDescriptionKey: "no peak from /usr/bin/time in: \(r.stderr)"])
        }
        r.stderr = lines.map { $0 + "\n" }.joined()
        return (r, kib)
    }

    static func run(_ args: [String]) throws -> CkptRun {
        try run(args, executable: binary, prefix: [])
    }

    private static func run(_ args: [String], executable: String, prefix: [String]) throws -> CkptRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = prefix + args
        p.currentDirectoryURL = root
        var env = ProcessInfo.processInfo.environment
        env["COLUMNS"] = "100"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        let reader = err.fileHandleForReading
        DispatchQueue.global().async {
            errBox.data = reader.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return CkptRun(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                       stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    /// `ckpt convert` of a copy of `source` (to `out.safetensors` in `dir`), the copy cut to 4 KiB
    /// `delay` seconds after the start, with `setup` (shell commands, e.g. a ulimit) run first.
    /// - Returns: how the process ended, its status and its stderr.
    static func convertWhileTruncating(_ source: String, in dir: URL, delay: Double,
                                       setup: String = "true") throws -> (reason: Process.TerminationReason, status: Int32, stderr: String) {
        let copy = dir.appendingPathComponent("in.pth").path
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: source, toPath: copy)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", setup + "; exec \"$0\" \"$@\"", binary, "convert", copy, dir.appendingPathComponent("out.safetensors").path]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        Thread.sleep(forTimeInterval: delay)
        guard truncate(copy, 4096) == 0 else { throw CocoaError(.fileWriteUnknown) }
        p.waitUntilExit()
        return (p.terminationReason, p.terminationStatus, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

}
