#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// One TensorBoard event file per run, as `torch.utils.tensorboard.SummaryWriter(log_dir)` makes:
// `<log_dir>/events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid>.<n><suffix>`, opened
// once, the `brain.Event:2` event written and flushed at once, then scalar events appended and
// flushed after every epoch. Unlike the CSV and the SVG the file is appended to, never rewritten
// (TensorBoard follows a growing file), so a crash keeps every flushed epoch. `<n>` counts event
// files already named alike in the directory (torch counts the writers of its process); both
// give `.0` for a run's first file.

/// Appends scalar events to a new TensorBoard event file.
///
/// PyTorch counterpart: `torch.utils.tensorboard.SummaryWriter` (`add_scalar`, `flush`, `close`)
/// over tensorboard's `EventFileWriter`. Not thread-safe: use it from one task.
public final class TensorBoardWriter {
    /// The directory holding the event file (`log_dir`).
    public let directory: String
    /// The event file's path.
    public let path: String

    private var fd: Int32
    private var pending: [UInt8] = []

    /// Creates `directory` if needed and a new event file in it holding the file-version event,
    /// flushed.
    ///
    /// - Parameters:
    ///   - directory: the log directory TensorBoard is pointed at (`--logdir`).
    ///   - wallTime: the file's creation time, seconds since 1970 (name and first event); now when nil.
    ///   - hostname: the name's host part; `gethostname()` when nil (`/` becomes `_`).
    ///   - filenameSuffix: appended to the name, as `SummaryWriter(filename_suffix=)`.
    /// - Throws: `ReportError(.io)` naming the directory or file when either cannot be created or written.
    public init(directory: String, wallTime: Double? = nil, hostname: String? = nil, filenameSuffix: String = "") throws {
        self.directory = directory
        try ReportFile.makeDirectories(directory)
        let created = wallTime ?? TensorBoardWriter.now()
        let host = (hostname ?? TensorBoardWriter.hostname()).replacingSlashes()
        let seconds = String(Int64(max(0, min(created, 9e15)).rounded(.down)))
        let stem = directory + "/events.out.tfevents." + String(repeating: "0", count: max(0, 10 - seconds.count)) + seconds
            + "." + host + "." + String(getpid()) + "."
        var opened: (Int32, String)?
        var lastError: Int32 = 0
        for n in 0 ..< 1000 {
            let candidate = stem + String(n) + filenameSuffix
            let f = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o666)
            if f >= 0 {
                opened = (f, candidate)
                break
            }
            lastError = errno
            if lastError != EEXIST { break }
        }
        guard let (f, name) = opened else {
            errno = lastError
            throw ReportFile.ioError(stem + "0" + filenameSuffix, "cannot create the event file")
        }
        fd = f
        path = name
        pending = TensorBoardEvent.record(TensorBoardEvent.fileVersionEvent(wallTime: created))
        try flush()
    }

    deinit {
        if fd >= 0 {
            // best effort: a caller that wants to know about a failed write calls `close()`
            try? flush()
            _ = posixClose(fd)
        }
    }

    /// Queues a scalar event; `flush()` writes it. PyTorch counterpart:
    /// `SummaryWriter.add_scalar(tag, value, global_step=step, walltime=wallTime)`.
    ///
    /// - Parameters:
    ///   - value: stored as a float (`simple_value`), as torch stores it.
    ///   - wallTime: seconds since 1970; now when nil.
    public func addScalar(tag: String, value: Double, step: Int, wallTime: Double? = nil) {
        let event = TensorBoardEvent.scalarEvent(tag: tag, value: value, step: Int64(step), wallTime: wallTime ?? TensorBoardWriter.now())
        pending += TensorBoardEvent.record(event)
    }

    /// Appends one epoch's scalars (`TensorBoardEvent.scalars(of:task:)`, step = the epoch
    /// number, one wall time for all) and flushes them.
    /// - Throws: `ReportError(.io)` naming the file when the write fails or the writer was closed.
    public func add(_ metrics: EpochMetrics, task: TrainingTask, wallTime: Double? = nil) throws {
        let time = wallTime ?? TensorBoardWriter.now()
        for (tag, value) in TensorBoardEvent.scalars(of: metrics, task: task) {
            addScalar(tag: tag, value: value, step: metrics.epoch, wallTime: time)
        }
        try flush()
    }

    /// Writes the queued events to the file (to the operating system, as Python's `flush`).
    /// - Throws: `ReportError(.io)` naming the file when the write fails or the writer was closed;
    ///   the events stay queued.
    public func flush() throws {
        guard !pending.isEmpty else { return }
        guard fd >= 0 else { throw ReportError(.io, path, "write after close") }
        try ReportFile.writeAll(fd, pending, path)
        pending.removeAll(keepingCapacity: true)
    }

    /// Flushes and closes the file; later writes throw. Safe to call twice.
    /// - Throws: `ReportError(.io)` naming the file when the last write or the close fails.
    public func close() throws {
        guard fd >= 0 else { return }
        defer { fd = -1 }
        let f = fd
        do {
            try flush()
        } catch {
            _ = posixClose(f)
            throw error
        }
        guard posixClose(f) == 0 else { throw ReportFile.ioError(path, "close failed") }
    }

    /// Seconds since 1970 as a Double, as Python's `time.time()`.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The machine's host name, as Python's `socket.gethostname()`.
    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// `close(2)`, named apart from `TensorBoardWriter.close`.
private func posixClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #else
    return Darwin.close(fd)
    #endif
}

private extension String {
    /// The string with `/` (which would make a path) replaced by `_`; `localhost` when empty.
    func replacingSlashes() -> String {
        isEmpty ? "localhost" : String(map { $0 == "/" ? "_" : $0 })
    }
}
