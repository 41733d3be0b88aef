// `OUT.metrics.csv`: one header line and one line per finished epoch, rewritten (atomically)
// after every epoch so that a crash or Ctrl-C keeps every epoch that finished.
//
// Numbers are printed round-trippably: the shortest decimal that reads back as the same Double
// (Swift's `description`, which is also what Python's `repr` prints: `0.1`, `1e-05`, `2.0`), so
// `float(cell)` in Python and `Double(cell)` in Swift give back the exact value. Non-finite values
// are `nan`, `inf`, `-inf` (Python's `float()` and pandas read them); an unmeasured value (no
// validation set) is an empty cell. Lines end in `\n`; no cell ever needs quoting.

/// Writes and reads the per-epoch metrics table `OUT.metrics.csv`.
///
/// Classification header:
/// `epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate,images_per_second,seconds`;
/// segmentation adds `val_miou` after `val_accuracy`. Accuracies and the mean IoU are fractions.
/// PyTorch counterpart: none in torch; the table a tutorial's epoch loop prints, kept as a file.
public enum MetricsCSV {
    /// The header's column names for `task`, in order.
    public static func columns(for task: TrainingTask) -> [String] {
        var names = ["epoch", "stage", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
        if task == .segmentation { names.append("val_miou") }
        names += ["learning_rate", "images_per_second", "seconds"]
        return names
    }

    /// The whole file for `log`: the header, then one line per epoch.
    public static func render(_ log: TrainingLog) -> String {
        var text = columns(for: log.task).joined(separator: ",") + "\n"
        for e in log.epochs {
            var cells = [String(e.epoch), String(e.stage), format(e.trainLoss), format(e.trainAccuracy),
                         format(e.validationLoss), format(e.validationAccuracy)]
            if log.task == .segmentation { cells.append(format(e.validationMeanIoU)) }
            cells += [format(e.learningRate), format(e.imagesPerSecond), format(e.seconds)]
            text += cells.joined(separator: ",") + "\n"
        }
        return text
    }

    /// Replaces `path` with `render(log)`, atomically (a temporary file renamed over it).
    /// - Throws: `ReportError(.io)` naming `path`, which is then as it was.
    public static func write(_ log: TrainingLog, to path: String) throws {
        try ReportFile.replace(path, with: Array(render(log).utf8))
    }

    /// Reads a table `render` wrote back into a log (to continue the reports of a resumed run).
    ///
    /// - Parameters:
    ///   - text: the file's contents.
    ///   - file: the file's name, for errors.
    /// - Throws: `ReportError(.malformed)` naming the file, line and column when the header is
    ///   neither task's, a line has another number of cells, or a cell is not a number;
    ///   `ReportError(.invalidMetrics)` when epochs are out of order.
    public static func parse(_ text: String, file: String) throws -> TrainingLog {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard let header = lines.first else {
            throw ReportError(.malformed, file, "empty; expected a header line")
        }
        guard let task = TrainingTask.allCases.first(where: { columns(for: $0).joined(separator: ",") == header }) else {
            throw ReportError(.malformed, file, "line 1: expected the header '\(columns(for: .classification).joined(separator: ","))' (val_miou after val_accuracy for segmentation), got '\(header.prefix(200))'")
        }
        let names = columns(for: task)
        var log = TrainingLog(task: task)
        for (index, line) in lines.enumerated().dropFirst() {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard cells.count == names.count else {
                throw ReportError(.malformed, file, "line \(index + 1): expected \(names.count) cells, got \(cells.count)")
            }
            func cell(_ name: String) -> String { names.firstIndex(of: name).map { cells[$0] } ?? "" }
            func number(_ name: String) throws -> Double {
                guard let v = try optionalNumber(name) else {
                    throw ReportError(.malformed, file, "line \(index + 1): column \(name): expected a number, got an empty cell")
                }
                return v
            }
            func optionalNumber(_ name: String) throws -> Double? {
                let text = cell(name)
                if text.isEmpty { return nil }
                guard let v = Double(text) else {
                    throw ReportError(.malformed, file, "line \(index + 1): column \(name): expected a number, got '\(text.prefix(40))'")
                }
                return v
            }
            guard let epoch = Int(cell("epoch")) else {
                throw ReportError(.malformed, file, "line \(index + 1): column epoch: expected an integer, got '\(cell("epoch").prefix(40))'")
            }
            guard let stage = Int(cell("stage")), stage >= 1 else {
                throw ReportError(.malformed, file, "line \(index + 1): column stage: expected a positive integer, got '\(cell("stage").prefix(40))'")
            }
            try log.append(EpochMetrics(
                epoch: epoch, stage: stage, trainLoss: number("train_loss"), trainAccuracy: number("train_accuracy"),
                validationLoss: optionalNumber("val_loss"), validationAccuracy: optionalNumber("val_accuracy"),
                validationMeanIoU: task == .segmentation ? optionalNumber("val_miou") : nil,
                learningRate: number("learning_rate"), imagesPerSecond: number("images_per_second"),
                seconds: number("seconds")))
        }
        return log
    }

    /// `x` as the shortest decimal that reads back as `x`; `nan`, `inf`, `-inf` otherwise.
    public static func format(_ x: Double) -> String {
        if x.isNaN { return "nan" }
        if x.isInfinite { return x < 0 ? "-inf" : "inf" }
        return x.description
    }

    /// `format(x)`, or an empty cell for nil.
    static func format(_ x: Double?) -> String {
        x.map { format($0) } ?? ""
    }
}
