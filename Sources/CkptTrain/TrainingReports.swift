// The reports of `ckpt finetune` kept together: after every epoch the log gains a row, the CSV
// and the SVG are rewritten (atomically) and the epoch's scalars are appended to the TensorBoard
// event file, so whatever stops the run, the files hold every finished epoch.

/// `OUT.metrics.csv`, `OUT.curves.svg` and (optionally) a TensorBoard event file, updated
/// after every epoch.
///
/// PyTorch counterpart: a tutorial's `writer = SummaryWriter(...)` plus the epoch loop's
/// `add_scalar` calls and printed table. Not thread-safe: use it from one task.
public final class TrainingReports {
    /// Where the metrics table goes: `<stem>.metrics.csv`.
    public let metricsPath: String
    /// Where the curves go: `<stem>.curves.svg`.
    public let curvesPath: String
    /// The SVG's title.
    public let title: String
    /// The event file writer, when TensorBoard output was asked for.
    public let tensorBoard: TensorBoardWriter?
    /// The epochs recorded so far (a resumed run's earlier ones included).
    public private(set) var log: TrainingLog

    /// Reports next to `stem` (the training output without its extension, say).
    ///
    /// - Parameters:
    ///   - stem: the path the report names start with.
    ///   - log: the epochs so far: empty for a fresh run, `MetricsCSV.parse` of the previous
    ///     table for a resumed one (its epochs are rewritten into the CSV and SVG on the next
    ///     `record`, and are not logged to TensorBoard again).
    ///   - title: the SVG's title; the last path component of `stem` when nil.
    ///   - tensorBoardDirectory: the log directory for a new event file; none when nil.
    ///   - wallTime: the event file's creation time; now when nil.
    /// - Throws: `ReportError(.io)` when the event file cannot be created.
    public init(stem: String, log: TrainingLog, title: String? = nil, tensorBoardDirectory: String? = nil,
                wallTime: Double? = nil) throws {
        metricsPath = stem + ".metrics.csv"
        curvesPath = stem + ".curves.svg"
        self.title = title ?? ReportFile.split(stem).name
        self.log = log
        tensorBoard = try tensorBoardDirectory.map { try TensorBoardWriter(directory: $0, wallTime: wallTime) }
    }

    /// Adds an epoch: appends it to the log, rewrites the CSV and the SVG, appends its scalars to
    /// the event file and flushes it. One file failing does not keep the others from being written.
    /// - Throws: `ReportError(.invalidMetrics)` when the epoch does not follow the log's last one
    ///   (nothing is written then); otherwise the first `ReportError(.io)`, naming its file (the
    ///   epoch stays in the log, so the next `record` rewrites the CSV and the SVG with it).
    public func record(_ metrics: EpochMetrics, wallTime: Double? = nil) throws {
        try log.append(metrics)
        var firstError: (any Error)?
        func attempt(_ body: () throws -> Void) {
            do { try body() } catch { firstError = firstError ?? error }
        }
        attempt { try MetricsCSV.write(log, to: metricsPath) }
        attempt { try CurvesSVG.write(log, title: title, to: curvesPath) }
        attempt { try tensorBoard?.add(metrics, task: log.task, wallTime: wallTime) }
        if let firstError { throw firstError }
    }

    /// Flushes and closes the event file.
    /// - Throws: `ReportError(.io)` naming the event file.
    public func close() throws {
        try tensorBoard?.close()
    }
}
