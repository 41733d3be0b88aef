import CkptTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Writing a file so that the destination is either untouched or completely replaced: bytes go to
// a hidden temporary file beside the destination (same directory, so same filesystem), which is
// flushed, fsynced and renamed over the destination on `commit()`.

/// A buffered writer that replaces `destination` atomically on `commit()` and leaves it untouched
/// otherwise. Not thread-safe: use it from one task.
public final class AtomicFileWriter {
    /// The path that `commit()` replaces.
    public let destination: String
    /// The temporary file's path, `<dir>/.<name>.tmp-<random>`.
    public let temporaryPath: String
    /// Bytes written so far (buffered ones included).
    public private(set) var position: Int = 0

    private var fd: Int32
    private var buffer: [UInt8] = []
    private let bufferCapacity: Int
    private var finished = false

    /// Creates the temporary file beside `destination`.
    ///
    /// - Parameters:
    ///   - destination: the file to replace on commit.
    ///   - inputs: paths the caller reads from; when `destination` is one of them (same path after
    ///     `realpath`, or the same device and inode, e.g. through a link) the writer refuses, so
    ///     `convert a.pth a.pth` cannot replace its input.
    ///   - bufferSize: bytes gathered before each `write(2)`.
    /// - Throws: `FormatError(.io)` naming `destination` when it is an input, a directory, or the
    ///   temporary file cannot be created.
    public init(destination: String, forbidding inputs: [String] = [], bufferSize: Int = 1 << 20) throws {
        self.destination = destination
        self.bufferCapacity = max(bufferSize, 4096)
        try AtomicFileWriter.checkNotAnInput(destination, inputs)

        var st = stat()
        if stat(destination, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFREG: break
            case S_IFDIR: throw FormatError(.io, file: destination, "is a directory, expected a file path to write")
            case S_IFCHR, S_IFBLK: throw FormatError(.io, file: destination, "is a device; ckpt writes regular files only (it would replace the device node)")
            case S_IFIFO: throw FormatError(.io, file: destination, "is a FIFO; ckpt writes regular files only")
            case S_IFSOCK: throw FormatError(.io, file: destination, "is a socket; ckpt writes regular files only")
            default: throw FormatError(.io, file: destination, "is not a regular file")
            }
        }
        let (dir, name) = AtomicFileWriter.split(destination)
        AtomicFileWriter.removeStaleTemporaries(dir: dir, name: name)
        var lastError: Int32 = 0
        var opened: (Int32, String)?
        for _ in 0 ..< 8 {
            let candidate = dir + "/." + name + ".tmp-" + String(getpid()) + "-" + String(UInt64.random(in: 0 ... UInt64.max), radix: 16)
            let f = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if f >= 0 {
                opened = (f, candidate)
                break
            }
            lastError = errno
            if lastError != EEXIST { break }
        }
        guard let (f, path) = opened else {
            throw FormatError(.io, file: destination, "cannot create a temporary file in \(dir): \(AtomicFileWriter.describe(lastError))")
        }
        self.fd = f
        self.temporaryPath = path
        TemporaryFiles.register(path)
        // keep the permissions of a file being replaced
        if (st.st_mode & S_IFMT) == S_IFREG && stat(destination, &st) == 0 {
            _ = fchmod(f, st.st_mode & 0o7777)
        }
        buffer.reserveCapacity(bufferCapacity)
    }

    deinit {
        if !finished { abort() }
    }

    /// Appends `bytes`.
    /// - Throws: `FormatError(.io)` when the disk write fails or the writer was committed or aborted.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !finished else { throw FormatError(.io, file: destination, "write after commit or abort") }
        if buffer.count + bytes.count <= bufferCapacity {
            buffer.append(contentsOf: bytes)
        } else {
            try flushBuffer()
            if bytes.count >= bufferCapacity {
                try writeAll(bytes)
            } else {
                buffer.append(contentsOf: bytes)
            }
        }
        position += bytes.count
    }

    /// Appends `bytes`.
    /// - Throws: as `write(_:)` for a raw buffer.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes `bytes` as the whole of `destination`: a temporary file beside it, committed, or
    /// removed when anything fails (`destination` then untouched).
    /// - Throws: as `init`, `write` and `commit`.
    public static func write(_ bytes: [UInt8], to destination: String, forbidding inputs: [String] = []) throws {
        let file = try AtomicFileWriter(destination: destination, forbidding: inputs)
        do {
            try file.write(bytes)
            try file.commit()
        } catch {
            file.abort()
            throw error
        }
    }

    /// Flushes, fsyncs and renames the temporary file over `destination`, then fsyncs the
    /// directory. On failure the temporary file is removed and `destination` is left as it was.
    /// - Throws: `FormatError(.io)` naming `destination`.
    public func commit() throws {
        guard !finished else { throw FormatError(.io, file: destination, "commit after commit or abort") }
        do {
            try flushBuffer()
            guard fsync(fd) == 0 else { throw ioError("fsync failed") }
            let f = fd
            fd = -1
            guard close(f) == 0 else { throw ioError("close failed") }
            guard rename(temporaryPath, destination) == 0 else { throw ioError("cannot rename the temporary file over it") }
            TemporaryFiles.unregister(temporaryPath)
        } catch {
            abort()
            throw error
        }
        finished = true
        // make the rename durable; failure here cannot undo it, so it is not an error
        let (dir, _) = AtomicFileWriter.split(destination)
        let d = open(dir, O_RDONLY | O_CLOEXEC)
        if d >= 0 {
            _ = fsync(d)
            _ = close(d)
        }
    }

    /// Closes and removes the temporary file; `destination` is untouched. Safe to call twice.
    public func abort() {
        if fd >= 0 {
            _ = close(fd)
            fd = -1
        }
        if !finished {
            _ = unlink(temporaryPath)
            TemporaryFiles.unregister(temporaryPath)
            finished = true
        }
        buffer = []
    }

    /// Removes `.<name>.tmp-<pid>-*` files in `dir` left by ckpt processes that no longer run
    /// (killed before they could clean up).
    static func removeStaleTemporaries(dir: String, name: String) {
        guard let d = opendir(dir) else { return }
        defer { closedir(d) }
        let prefix = "." + name + ".tmp-"
        while let e = readdir(d) {
            let entry = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard entry.hasPrefix(prefix) else { continue }
            let rest = entry.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { _ = unlink(dir + "/" + entry) }
        }
    }

    private func flushBuffer() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = posixWrite(fd, p, min(left, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("write failed")
            }
            if n == 0 { throw ioError("write wrote nothing") }
            p += n
            left -= n
        }
    }

    private func ioError(_ what: String) -> FormatError {
        FormatError(.io, file: destination, "\(what): \(AtomicFileWriter.describe(errno))")
    }

    private static func describe(_ code: Int32) -> String {
        String(cString: strerror(code)).lowercased()
    }

    /// The directory (`.` when none) and last component of `path`.
    static func split(_ path: String) -> (dir: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    /// Throws when `destination` names the same file as one of `inputs`: same device and inode
    /// (which also catches symlinks, hard links and `./a` vs `a`). A destination that does not
    /// exist yet cannot be an input that is being read.
    static func checkNotAnInput(_ destination: String, _ inputs: [String]) throws {
        var dst = stat()
        guard stat(destination, &dst) == 0 else { return }
        for input in inputs {
            var src = stat()
            if stat(input, &src) == 0 && src.st_dev == dst.st_dev && src.st_ino == dst.st_ino {
                throw FormatError(.io, file: destination, "output is the same file as input \(input); refusing to overwrite an input")
            }
        }
    }
}

/// `write(2)`, named apart from `AtomicFileWriter.write`.
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}

/// Temporary files being written, removed when SIGINT, SIGTERM or SIGHUP ends the process: the
/// handler only calls `unlink` (async-signal-safe) on the table's C strings, then restores the
/// default action and re-raises the signal.
public enum TemporaryFiles {
    static let paths = SignalSafePaths(capacity: 64)
    nonisolated(unsafe) private static var installed = false
    private static let once = NSLockish()

    static func register(_ path: String) {
        once.locked {
            if !installed {
                installed = true
                for sig in [SIGINT, SIGTERM, SIGHUP] { signal(sig, temporaryFilesSignalHandler) }
            }
        }
        paths.insert(path)
    }

    static func unregister(_ path: String) { paths.remove(path) }

    /// Unlinks every temporary file still being written (async-signal-safe: `unlink` only).
    public static func removeAll() {
        paths.forEach { _ = unlink($0) }
    }
}

private func temporaryFilesSignalHandler(_ sig: Int32) {
    TemporaryFiles.removeAll()
    signal(sig, SIG_DFL)
    raise(sig)
}

/// A pthread mutex (Foundation-free).
final class NSLockish: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}
