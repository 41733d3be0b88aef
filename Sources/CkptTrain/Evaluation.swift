import CkptData
import CkptKernels
import CkptNN

// Logits are [N, K]: N images, K classes.

/// Loss and accuracy of a classifier over a set of images.
public struct EvaluationResult: Sendable, Equatable {
    /// Mean cross-entropy over the images.
    public var loss: Double
    /// Share of images whose largest logit is their class.
    public var accuracy: Double
    /// Images evaluated (skipped images not counted).
    public var images: Int
    /// Segmentation: the mean over classes of intersection over union, counting the classes
    /// that appear in a mask or a prediction (ignored pixels left out); nil for classification.
    public var meanIoU: Double?

    public init(loss: Double, accuracy: Double, images: Int, meanIoU: Double? = nil) {
        self.loss = loss
        self.accuracy = accuracy
        self.images = images
        self.meanIoU = meanIoU
    }
}

/// The validation pass of a fine-tuning epoch and the accuracy count both passes share.
/// PyTorch counterpart: the tutorials' `model.eval()` phase under `torch.no_grad()`.
public enum Evaluation {
    /// Eval-mode loss and accuracy over every batch `loader` gives for `epoch`; the model is put
    /// back in training mode afterwards when it was in it.
    /// - Throws: the loader's `DataError`, the model's and the loss's errors.
    public static func run(_ model: Module, loader: BatchLoader, epoch: Int, loss: CrossEntropy = CrossEntropy()) throws -> EvaluationResult {
        let restore = model.enterEvalMode()
        defer { restore() }
        var total = 0.0
        var correct = 0
        var images = 0
        let batches = loader.epoch(epoch)
        while let batch = try batches.next() {
            guard batch.count > 0 else { continue }
            let x = try DenseTensor(shape: batch.shape, values: batch.images)
            let y = try model.evaluate([x])
            let l = try loss.forward(y, targets: batch.labels)
            total += Double(l.values.first ?? .nan) * Double(batch.count)
            correct += self.correct(y, targets: batch.labels, ignoreIndex: loss.ignoreIndex).correct
            images += batch.count
        }
        guard images > 0 else { return EvaluationResult(loss: .nan, accuracy: .nan, images: 0) }
        return EvaluationResult(loss: total / Double(images), accuracy: Double(correct) / Double(images), images: images)
    }

    /// Eval-mode loss and accuracy of `head` (a `HeadSplit` head of `model`) over cached
    /// features, in batches of `batchSize` in sample order (the validation loader's batches);
    /// `model` is put back in training mode afterwards when it was in it.
    /// - Throws: the head's and the loss's errors.
    static func run(_ head: Module, of model: Module, cache: FeatureCache, batchSize: Int,
                    loss: CrossEntropy = CrossEntropy()) throws -> EvaluationResult {
        let restore = model.enterEvalMode()
        defer { restore() }
        var total = 0.0
        var correct = 0
        var images = 0
        let order = Array(0 ..< cache.labels.count)
        for i in 0 ..< FeatureCache.batchCount(samples: order.count, batchSize: batchSize) {
            let b = try cache.batch(order: order, index: i, batchSize: batchSize)
            guard !b.labels.isEmpty else { continue }
            let y = try head.evaluate([b.x])
            let l = try loss.forward(y, targets: b.labels)
            total += Double(l.values.first ?? .nan) * Double(b.labels.count)
            correct += self.correct(y, targets: b.labels, ignoreIndex: loss.ignoreIndex).correct
            images += b.labels.count
        }
        guard images > 0 else { return EvaluationResult(loss: .nan, accuracy: .nan, images: 0) }
        return EvaluationResult(loss: total / Double(images), accuracy: Double(correct) / Double(images), images: images)
    }

    /// Eval-mode loss (each batch's mean over its non-ignored pixels, weighted by its images),
    /// pixel accuracy and mean IoU of a segmentation model over every batch of `loader`; `inputs`
    /// makes the model's inputs from a batch, `check` vets its masks.
    /// PyTorch counterpart: a confusion matrix accumulated with `torch.bincount(n * target + pred)`.
    /// - Throws: the loader's `DataError`, `check`'s, the model's and the loss's errors.
    static func segmentation(_ model: Module, loader: BatchLoader, epoch: Int, classes: Int, loss: CrossEntropy,
                             inputs: (ImageBatch) throws -> [DenseTensor], check: (ImageBatch) throws -> Void) throws -> EvaluationResult {
        let restore = model.enterEvalMode()
        defer { restore() }
        var total = 0.0
        var images = 0
        var confusion = [Int](repeating: 0, count: classes * classes)  // [target][prediction]
        let batches = loader.epoch(epoch)
        while let batch = try batches.next() {
            guard batch.count > 0 else { continue }
            try check(batch)
            let y = try model.evaluate(try inputs(batch))
            let l = try loss.forward(y, targets: batch.labels)
            total += Double(l.values.first ?? .nan) * Double(batch.count)
            images += batch.count
            let predicted = argmax(y)
            for (t, p) in zip(batch.labels, predicted) where t != loss.ignoreIndex && t >= 0 && t < classes {
                confusion[t * classes + p] += 1
            }
        }
        guard images > 0 else { return EvaluationResult(loss: .nan, accuracy: .nan, images: 0, meanIoU: .nan) }
        var hits = 0, pixels = 0
        var ious: [Double] = []
        for c in 0 ..< classes {
            let tp = confusion[c * classes + c]
            let row = (0 ..< classes).reduce(0) { $0 + confusion[c * classes + $1] }
            let column = (0 ..< classes).reduce(0) { $0 + confusion[$1 * classes + c] }
            hits += tp
            pixels += row
            let union = row + column - tp
            if union > 0 { ious.append(Double(tp) / Double(union)) }
        }
        return EvaluationResult(loss: total / Double(images), accuracy: pixels > 0 ? Double(hits) / Double(pixels) : .nan, images: images,
                                meanIoU: ious.isEmpty ? .nan : ious.reduce(0, +) / Double(ious.count))
    }

    /// The class of largest score per sample: per row of `[N, K]` logits, per pixel of
    /// `[N, K, H, W]` scores (in N, H, W order); the first on ties, as `argmax`.
    static func argmax(_ scores: DenseTensor) -> [Int] {
        guard scores.rank == 2 || scores.rank == 4 else { return [] }
        let n = scores.shape[0], k = scores.shape[1]
        let plane = scores.rank == 4 ? scores.shape[2] * scores.shape[3] : 1
        var out = [Int](repeating: 0, count: n * plane)
        scores.values.withUnsafeBufferPointer { v in
            for i in 0 ..< n {
                for p in 0 ..< plane {
                    var best = 0
                    var top = k > 0 ? v[i * k * plane + p] : 0
                    for j in 1 ..< max(k, 1) where v[(i * k + j) * plane + p] > top {
                        best = j
                        top = v[(i * k + j) * plane + p]
                    }
                    out[i * plane + p] = best
                }
            }
        }
        return out
    }

    /// Samples (rows, or pixels of a segmentation) whose largest score is their target, and
    /// samples counted (targets equal to `ignoreIndex` left out).
    public static func correct(_ scores: DenseTensor, targets: [Int], ignoreIndex: Int = -100) -> (correct: Int, counted: Int) {
        var correct = 0, counted = 0
        for (p, t) in zip(argmax(scores), targets) where t != ignoreIndex {
            counted += 1
            if p == t { correct += 1 }
        }
        return (correct, counted)
    }
}

extension Module {
    /// Puts the model in eval mode; the returned function puts it back in training mode when it
    /// was in it (`model.eval()` … `model.train()` around a validation pass).
    func enterEvalMode() -> () -> Void {
        let wasTraining = isTraining
        setTraining(false)
        return { if wasTraining { self.setTraining(true) } }
    }
}
