import Foundation

// A minimal per-epoch metrics table for `ckpt finetune`. A general training log (TrainingLog,
// MetricsCSV, curves, TensorBoard) is being written separately; this file is the one place to
// reconcile with it: `FineTuneEpoch` is the row, `FineTuneMetrics.csv` the text.

/// What one epoch of fine-tuning measured.
/// PyTorch counterpart: the tutorials' `epoch_loss`, `epoch_acc` per phase, and the scheduler's rate.
public struct FineTuneEpoch: Sendable, Equatable {
    /// The epoch, from 1.
    public var epoch: Int
    /// The stage, from 1 (2 for the second stage of `two-stage`).
    public var stage: Int
    /// Mean training loss over the images (each batch's mean loss weighted by its size).
    public var trainLoss: Double
    /// Share of training images whose largest logit is their class (in training mode, during the epoch).
    public var trainAccuracy: Double
    /// Mean validation loss, in eval mode with the eval transform; nil without a validation split.
    public var validationLoss: Double?
    /// Validation accuracy; nil without a validation split.
    public var validationAccuracy: Double?
    /// The learning rate of the epoch (the first parameter group's).
    public var learningRate: Double
    /// Training images per second, data loading included.
    public var imagesPerSecond: Double
    /// Wall time of the epoch, validation included.
    public var seconds: Double
    /// Training images seen (skipped images not counted).
    public var images: Int

    /// A row of metrics.
    public init(epoch: Int, stage: Int, trainLoss: Double, trainAccuracy: Double, validationLoss: Double?, validationAccuracy: Double?,
                learningRate: Double, imagesPerSecond: Double, seconds: Double, images: Int) {
        self.epoch = epoch
        self.stage = stage
        self.trainLoss = trainLoss
        self.trainAccuracy = trainAccuracy
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
        self.learningRate = learningRate
        self.imagesPerSecond = imagesPerSecond
        self.seconds = seconds
        self.images = images
    }

    /// The score the best epoch is chosen by, higher is better: validation accuracy, ties broken
    /// by the lower validation loss; without validation, the lower training loss.
    public var score: (Double, Double) {
        if let a = validationAccuracy { return (a, -(validationLoss ?? 0)) }
        return (-trainLoss, 0)
    }

    /// True when this epoch scores strictly better than `other`.
    public func isBetter(than other: (Double, Double)?) -> Bool {
        guard let other else { return true }
        let s = score
        return s.0 > other.0 || (s.0 == other.0 && s.1 > other.1)
    }
}

/// `OUT.metrics.csv`: a header and one row per epoch.
public enum FineTuneMetrics {
    /// The column names.
    public static let columns = ["epoch", "stage", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                 "learning_rate", "images_per_second", "seconds"]

    /// The header line (no newline).
    public static var header: String { columns.joined(separator: ",") }

    /// One row (no newline); an absent validation value is an empty cell.
    public static func row(_ m: FineTuneEpoch) -> String {
        func number(_ x: Double?) -> String {
            guard let x else { return "" }
            if x.isNaN { return "nan" }
            if x.isInfinite { return x < 0 ? "-inf" : "inf" }
            return String(format: "%.8g", x)
        }
        return [String(m.epoch), String(m.stage), number(m.trainLoss), number(m.trainAccuracy), number(m.validationLoss),
                number(m.validationAccuracy), number(m.learningRate), String(format: "%.1f", m.imagesPerSecond),
                String(format: "%.3f", m.seconds)].joined(separator: ",")
    }

    /// The whole file for `rows`: the header, then a line per row.
    public static func csv(_ rows: [FineTuneEpoch]) -> String {
        ([header] + rows.map(row)).joined(separator: "\n") + "\n"
    }

    /// The rows of an existing file kept for epochs up to `epoch` (a resumed run rewrites the
    /// rest); lines that do not parse are dropped.
    public static func rows(fromCSV text: String, throughEpoch epoch: Int) -> [String] {
        text.split(whereSeparator: \.isNewline).dropFirst().filter { line in
            guard let first = line.split(separator: ",", omittingEmptySubsequences: false).first, let e = Int(first) else { return false }
            return e <= epoch
        }.map(String.init)
    }
}
