// A fine-tuning epoch as the run measures it; its `reported` form is the row of the training
// log the reports are drawn from (TrainingLog, MetricsCSV, CurvesSVG, TensorBoardWriter).

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
    /// Validation accuracy (of pixels, for segmentation); nil without a validation split.
    public var validationAccuracy: Double?
    /// Segmentation: the validation mean IoU (over the classes present in a mask or a prediction).
    public var validationMeanIoU: Double?
    /// The learning rate of the epoch (the first parameter group's).
    public var learningRate: Double
    /// Training images per second, data loading included.
    public var imagesPerSecond: Double
    /// Wall time of the epoch, validation included.
    public var seconds: Double
    /// Training images seen (skipped images not counted).
    public var images: Int

    /// A row of metrics.
    public init(epoch: Int, stage: Int, trainLoss: Double, trainAccuracy: Double, validationLoss: Double?, validationAccuracy: Double?, validationMeanIoU: Double? = nil,
                learningRate: Double, imagesPerSecond: Double, seconds: Double, images: Int) {
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
        self.images = images
    }

    /// The score the best epoch is chosen by, higher is better: validation mean IoU (segmentation)
    /// or accuracy, ties broken
    /// by the lower validation loss; without validation, the lower training loss.
    public var score: (Double, Double) {
        if let m = validationMeanIoU { return (m, -(validationLoss ?? 0)) }
        if let a = validationAccuracy { return (a, -(validationLoss ?? 0)) }
        return (-trainLoss, 0)
    }

    /// True when this epoch scores strictly better than `other`.
    /// The row of the reports (`OUT.metrics.csv`, curves, TensorBoard).
    public var reported: EpochMetrics {
        EpochMetrics(epoch: epoch, stage: stage, trainLoss: trainLoss, trainAccuracy: trainAccuracy, validationLoss: validationLoss,
                     validationAccuracy: validationAccuracy, validationMeanIoU: validationMeanIoU, learningRate: learningRate, imagesPerSecond: imagesPerSecond, seconds: seconds)
    }

    public func isBetter(than other: (Double, Double)?) -> Bool {
        guard let other else { return true }
        let s = score
        return s.0 > other.0 || (s.0 == other.0 && s.1 > other.1)
    }
}
