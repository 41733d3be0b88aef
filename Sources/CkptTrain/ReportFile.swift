#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CkptTensor

// The file system side of the training reports. Whole-file reports (the CSV and the SVG) are
// replaced the way `CkptFormat.AtomicFileWriter` replaces checkpoints: bytes go to a hidden
// temporary file beside the destination, which is fsynced and renamed over it, so a crash leaves
// either the previous epoch's report or this one, never half of one. (`CkptTrain` does not link
// `CkptFormat`, so the few lines are repeated here rather than the dependency added.)

/// Every failure to write or read back a training report: what went wrong and where.
///
/// Printed as one lower-case line, `file: message`, e.g.
/// `run.metrics.csv: line 3: column val_loss: expected a number, got 'abc'`.
public struct ReportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The class of failure.
    public enum Kind: String, Sendable {
        /// The operating system failed (mkdir, open, write, fsync, rename).
        case io
        /// Metrics that cannot be reported: epochs out of order, a metric the task does not have.
        case invalidMetrics
        /// A report read back is not laid out as ckpt writes it (a wrong header, a bad number).
        case malformed
    }

    /// The class of failure.
    public var kind: Kind
    /// The file (or `training log`) concerned.
    public var file: String
    /// Lower-case message saying what, expected and got.
    public var message: String

    /// An error of `kind` about `file`.
    public init(_ kind: Kind, _ file: String, _ message: String) {
        self.kind = kind
        self.file = file
        self.message = message
    }

    /// `file: message`.
    public var description: String { OneLine.escaped(file + ": " + message) }
}

/// Atomic replacement and directory creation for the reports.
enum ReportFile {
    /// Replaces `path` with `bytes`: a temporary `.<name>.tmp-<pid>` beside it, written, fsynced
    /// and renamed over `path`. One temporary name per process and destination, so a process
    /// killed mid-write leaves at most one stale file, which its next run with the same pid
    /// replaces.
    /// - Throws: `ReportError(.io)` naming `path`; `path` is then as it was.
    static func replace(_ path: String, with bytes: [UInt8]) throws {
        let (dir, name) = split(path)
        let temporary = dir + "/." + name + ".tmp-" + String(getpid())
        var fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        if fd < 0 && errno == EEXIST {
            _ = unlink(temporary)
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        }
        guard fd >= 0 else { throw ioError(path, "cannot create a temporary file in \(dir)") }
        do {
            try writeAll(fd, bytes, path)
            guard fsync(fd) == 0 else { throw ioError(path, "fsync failed") }
            let f = fd
            fd = -1
            guard close(f) == 0 else { throw ioError(path, "close failed") }
            guard rename(temporary, path) == 0 else { throw ioError(path, "cannot rename the temporary file over it") }
        } catch {
            if fd >= 0 { _ = close(fd) }
            _ = unlink(temporary)
            throw error
        }
        // make the rename durable; a failure here cannot undo it, so it is not an error
        let d = open(dir, O_RDONLY | O_CLOEXEC)
        if d >= 0 {
            _ = fsync(d)
            _ = close(d)
        }
    }

    /// Writes every byte of `bytes` to `fd`, retrying short writes and `EINTR`.
    /// - Throws: `ReportError(.io)` naming `path`.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws {
        try bytes.withUnsafeBytes { raw in
            guard var p = raw.baseAddress else { return }
            var left = raw.count
            while left > 0 {
                let n = posixWrite(fd, p, left)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ioError(path, "write failed")
                }
                if n == 0 { throw ReportError(.io, path, "write wrote nothing") }
                p += n
                left -= n
            }
        }
    }

    /// Creates `path` and its missing parents (`mkdir -p`, as `tf.io.gfile.makedirs`).
    /// - Throws: `ReportError(.io)` when a component cannot be created or is not a directory.
    static func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw ioError(path, "cannot create directory \(prefix)")
            }
            var st = stat()
            guard stat(prefix, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                throw ReportError(.io, path, "\(prefix) exists and is not a directory; expected a directory for the event files")
            }
            prefix += "/"
        }
    }

    /// The directory (`.` when none) and last component of `path`.
    static func split(_ path: String) -> (dir: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    /// An I/O error naming `path`, `what` failed and the system's reason.
    static func ioError(_ path: String, _ what: String) -> ReportError {
        ReportError(.io, path, "\(what): \(String(cString: strerror(errno)).lowercased())")
    }
}

/// `write(2)`, named apart from the writers' own `write` methods.
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}
