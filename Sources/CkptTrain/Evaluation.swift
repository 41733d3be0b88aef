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
}

/// The validation pass of a fine-tuning epoch and the accuracy count both passes share.
/// PyTorch counterpart: the tutorials' `model.eval()` phase under `torch.no_grad()`.
public enum Evaluation {
    /// Eval-mode loss and accuracy over every batch `loader` gives for `epoch`; the model is put
    /// back in training mode afterwards when it was in it.
    /// - Throws: the loader's `DataError`, the model's and the loss's errors.
    public static func run(_ model: Module, loader: BatchLoader, epoch: Int, loss: CrossEntropy = CrossEntropy()) throws -> EvaluationResult {
        let wasTraining = model.isTraining
        model.setTraining(false)
        defer { if wasTraining { model.setTraining(true) } }
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
            correct += correctCount(y, targets: batch.labels)
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
        let wasTraining = model.isTraining
        model.setTraining(false)
        defer { if wasTraining { model.setTraining(true) } }
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
            correct += correctCount(y, targets: b.labels)
            images += b.labels.count
        }
        guard images > 0 else { return EvaluationResult(loss: .nan, accuracy: .nan, images: 0) }
        return EvaluationResult(loss: total / Double(images), accuracy: Double(correct) / Double(images), images: images)
    }

    /// How many rows of `logits` have their largest value (the first, on ties, as `argmax`) at
    /// their target.
    public static func correctCount(_ logits: DenseTensor, targets: [Int]) -> Int {
        guard logits.rank == 2 else { return 0 }
        let (n, k) = (logits.shape[0], logits.shape[1])
        var correct = 0
        logits.values.withUnsafeBufferPointer { v in
            for i in 0 ..< min(n, targets.count) {
                var best = 0
                for j in 1 ..< max(k, 1) where v[i * k + j] > v[i * k + best] { best = j }
                if k > 0, best == targets[i] { correct += 1 }
            }
        }
        return correct
    }
}
