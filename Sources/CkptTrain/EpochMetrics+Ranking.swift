// How a fine-tuning run ranks its epochs (the best one is written to OUT).

extension EpochMetrics {
    /// The score the best epoch is chosen by, higher is better: validation mean IoU (segmentation)
    /// or accuracy, ties broken by the lower validation loss; without validation, the lower
    /// training loss.
    public var score: (Double, Double) {
        if let m = validationMeanIoU { return (m, -(validationLoss ?? 0)) }
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
