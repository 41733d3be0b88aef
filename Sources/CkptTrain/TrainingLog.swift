// What `ckpt finetune` measured, epoch by epoch: the one value its three reports are drawn from
// (`OUT.metrics.csv`, `OUT.curves.svg`, TensorBoard event files). Losses are the mean
// cross-entropy over the epoch's samples (images, or pixels for segmentation); accuracies and
// the mean IoU are fractions in [0, 1]. A diverged epoch keeps its NaN or infinite values: the
// reports show them as such (the CSV spells them `nan`, the curves leave a gap).

/// What a run predicts, which decides the quality metric its reports carry.
public enum TrainingTask: String, Sendable, CaseIterable {
    /// One label per image; quality is top-1 accuracy.
    case classification
    /// One label per pixel; quality is the mean intersection over union of the validation
    /// pixels (pixel accuracy is reported too).
    case segmentation

    /// The validation metric that picks the best epoch: `accuracy` or `mIoU`.
    public var qualityName: String {
        switch self {
        case .classification: return "accuracy"
        case .segmentation: return "mIoU"
        }
    }
}

/// One epoch's measurements.
///
/// PyTorch counterpart: the numbers a tutorial's epoch loop prints and passes to
/// `SummaryWriter.add_scalar` (`Loss/train`, `Accuracy/val`, …).
public struct EpochMetrics: Sendable, Equatable {
    /// The epoch number (from 1 in a fresh run; a resumed run continues the count).
    public var epoch: Int
    /// The stage it belongs to, from 1 (2 for the second stage of a two-stage run).
    public var stage: Int
    /// Mean training loss over the epoch's samples.
    public var trainLoss: Double
    /// Fraction of training samples (images or pixels) predicted right, in [0, 1].
    public var trainAccuracy: Double
    /// Mean validation loss, or nil when the run has no validation set.
    public var validationLoss: Double?
    /// Fraction of validation samples predicted right, or nil without a validation set.
    public var validationAccuracy: Double?
    /// Mean IoU over the classes of the validation pixels (segmentation only), or nil.
    public var validationMeanIoU: Double?
    /// The learning rate the epoch trained with (the first parameter group's).
    public var learningRate: Double
    /// Training throughput over the epoch, images per second.
    public var imagesPerSecond: Double
    /// Wall-clock seconds the epoch took, validation included.
    public var seconds: Double
    /// Training images seen (skipped images not counted); not in the reports.
    public var images: Int

    /// One epoch's measurements; the validation ones are nil when there is no validation set.
    public init(epoch: Int, stage: Int = 1, trainLoss: Double, trainAccuracy: Double, validationLoss: Double? = nil,
                validationAccuracy: Double? = nil, validationMeanIoU: Double? = nil, learningRate: Double,
                imagesPerSecond: Double, seconds: Double, images: Int = 0) {
        self.images = images
        self.epoch = epoch
        self.stage = stage
        self.trainLoss = trainLoss
        self.trainAccuracy = trainAccuracy
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
        self.validationMeanIoU = validationMeanIoU
        self.learningRate = learningRate
        self.imagesPerSecond = imagesPerSecond
        self.seconds = seconds
    }

    /// The validation value that ranks epochs for `task`: the mean IoU for segmentation,
    /// the accuracy otherwise; nil when not measured.
    public func validationQuality(for task: TrainingTask) -> Double? {
        switch task {
        case .classification: return validationAccuracy
        case .segmentation: return validationMeanIoU
        }
    }
}

/// The per-epoch metrics of one run, in epoch order: what the reports are written from.
///
/// A value type: the training loop appends a row after each epoch and hands the log to
/// `MetricsCSV`, `CurvesSVG` and `TensorBoardWriter`. `MetricsCSV.parse` reads one back (to
/// continue the reports of a resumed run). Equality is `Double`'s: a log holding a NaN is not
/// equal to itself.
public struct TrainingLog: Sendable, Equatable {
    /// Classification or segmentation: decides the quality metric and the report columns.
    public let task: TrainingTask
    /// The epochs so far, epoch numbers strictly increasing.
    public private(set) var epochs: [EpochMetrics]

    /// An empty log for a run of `task`.
    public init(task: TrainingTask) {
        self.task = task
        self.epochs = []
    }

    /// A log holding `epochs`.
    /// - Throws: `ReportError(.invalidMetrics)` as `append(_:)` does for the first row that fails.
    public init(task: TrainingTask, epochs: [EpochMetrics]) throws {
        self.init(task: task)
        for e in epochs { try append(e) }
    }

    /// Adds the next epoch.
    /// - Throws: `ReportError(.invalidMetrics)` when the epoch number is not above the last one
    ///   (the curves and TensorBoard need steps in order), or when a classification run carries
    ///   a mean IoU (it would not be reported anywhere).
    public mutating func append(_ metrics: EpochMetrics) throws {
        if let last = epochs.last, metrics.epoch <= last.epoch {
            throw ReportError(.invalidMetrics, "training log",
                              "epoch \(metrics.epoch) comes after epoch \(last.epoch); expected epoch numbers to increase")
        }
        if task == .classification && metrics.validationMeanIoU != nil {
            throw ReportError(.invalidMetrics, "training log",
                              "epoch \(metrics.epoch): a mean IoU was given for a classification run; expected it for segmentation only")
        }
        epochs.append(metrics)
    }

    /// The epoch with the highest finite validation quality (accuracy, or mean IoU for
    /// segmentation), the earliest of equals; nil when no epoch has one.
    public var bestEpoch: EpochMetrics? {
        var best: EpochMetrics?
        var bestValue = -Double.infinity
        for e in epochs {
            guard let q = e.validationQuality(for: task), q.isFinite else { continue }
            if best == nil || q > bestValue {
                best = e
                bestValue = q
            }
        }
        return best
    }

    /// True when some epoch measured validation metrics.
    public var hasValidation: Bool {
        epochs.contains { $0.validationLoss != nil || $0.validationAccuracy != nil || $0.validationMeanIoU != nil }
    }
}
