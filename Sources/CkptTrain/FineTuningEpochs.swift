import CkptData
import CkptKernels
import CkptNN
import Dispatch

// Batches are NCHW float32: N images, C channels, H rows, W columns; logits are [N, K].

/// Where a run stands after one training batch, for a progress line.
public struct BatchProgress: Sendable {
    /// The epoch, from 1, and the run's epoch count.
    public var epoch: Int
    /// Epochs in the run.
    public var epochs: Int
    /// The batch just trained, from 1.
    public var batch: Int
    /// Batches in the epoch.
    public var batches: Int
    /// Mean training loss of the epoch so far.
    public var loss: Double
    /// Training accuracy of the epoch so far.
    public var accuracy: Double
    /// Training images per second in the epoch so far.
    public var imagesPerSecond: Double
    /// Seconds left in the epoch's training at the pace so far.
    public var etaSeconds: Double
    /// The epoch's learning rate.
    public var learningRate: Double
    /// True while the frozen network runs once over the images to cache the head's inputs
    /// (`batch` of `batches` then counts that pass).
    public var caching = false
}

/// What one finished epoch reports: its metrics, whether it is the best so far (its weights
/// then belong in `OUT`), and the images its batches left out.
public struct EpochOutcome: Sendable {
    /// The epoch's metrics.
    public var metrics: EpochMetrics
    /// True when this epoch scores best so far (`EpochMetrics.isBetter`).
    public var isBest: Bool
    /// Images left out of training or validation batches this epoch (`skipBadImages`).
    public var skipped: [SkippedImage]
    /// True when the epoch trained the head on cached features (its throughput is the head's).
    public var fromCachedFeatures = false
}

/// The whole of a finished run (the epochs this call trained).
public struct FineTuneSummary: Sendable {
    /// Every epoch trained by this call, in order.
    public var epochs: [EpochMetrics]
    /// The best epoch of the run (earlier, resumed epochs included), from 1.
    public var bestEpoch: Int?
    /// Wall time of the epochs, validation included.
    public var seconds: Double
    /// Training images per second over the epochs.
    public var imagesPerSecond: Double
    /// Optimizer steps taken over the whole run.
    public var steps: Int
}

extension FineTuning {
    /// Trains from `nextEpoch` to the last epoch: per batch zero the gradients, forward in
    /// training mode, cross-entropy, backward, optimizer step; per epoch step the schedule, check
    /// the frozen tensors, validate in eval mode, then report.
    /// - Parameters:
    ///   - onBatch: called after every training batch.
    ///   - onEpoch: called after every epoch, once the run is ready for the next (so a
    ///     checkpoint taken here resumes exactly); what it throws stops the run.
    /// - Throws: `TrainingError.stopped` naming epoch, batch and step for a loss or gradient that
    ///   is not finite (no weight of that step changed; nothing reported for the epoch);
    ///   `TrainingError.frozenTensorChanged`; the loader's `DataError`; what `onEpoch` throws.
    @discardableResult
    public func run(onBatch: (BatchProgress) -> Void = { _ in }, onEpoch: (EpochOutcome) throws -> Void = { _ in }) throws -> FineTuneSummary {
        var trained: [EpochMetrics] = []
        var totalSeconds = 0.0, trainSeconds = 0.0
        var totalImages = 0
        while nextEpoch < options.epochs {
            let epoch = nextEpoch
            let epochStage = options.stage(ofEpoch: epoch)
            if epochStage != stage { try enter(epochStage) }
            let learningRate = trainer.optimizer?.groups.first?.learningRate ?? 0
            var lossSum = 0.0
            var correct = 0, counted = 0, images = 0
            var skipped: [SkippedImage] = []
            var step = (index: 0, count: trainLoader.batchesPerEpoch)
            // an epoch that caches features counts the pass in its time and its images per second
            let start = DispatchTime.now().uptimeNanoseconds
            let cache = try cachedFeatures(epoch: epoch, onBatch: onBatch)
            if let cache, cache.builtNow { skipped += cache.train.skipped + (cache.validation?.skipped ?? []) }
            func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
            // one optimizer step on a batch, reported
            func train(_ inputs: [DenseTensor], _ labels: [Int], images count: Int) throws {
                let outcome: StepOutcome
                do {
                    outcome = try trainer.step(inputs: inputs, targets: labels)
                } catch let TrainingError.nonFiniteLoss(_, value) {
                    throw TrainingError.stopped(epoch: epoch + 1, batch: step.index, step: steps + 1,
                                                reason: "the loss is \(value.isNaN ? "nan" : String(describing: value)) (not finite); stopped before changing any weight (lower the learning rate?)")
                } catch let TrainingError.nonFiniteGradient(_, key) {
                    throw TrainingError.stopped(epoch: epoch + 1, batch: step.index, step: steps + 1,
                                                reason: "the gradient of \(key) is not finite; stopped before changing any weight (lower the learning rate?)")
                }
                steps += 1
                lossSum += Double(outcome.loss) * Double(count)
                let hits = Evaluation.correct(outcome.output, targets: labels, ignoreIndex: trainer.loss.ignoreIndex)
                correct += hits.correct
                counted += hits.counted
                images += count
                let seconds = elapsed()
                onBatch(BatchProgress(epoch: epoch + 1, epochs: options.epochs, batch: step.index, batches: step.count,
                                      loss: lossSum / Double(images), accuracy: Double(correct) / Double(max(counted, 1)),
                                      imagesPerSecond: Double(images) / max(seconds, 1e-9),
                                      etaSeconds: seconds / Double(step.index) * Double(step.count - step.index), learningRate: learningRate))
            }
            if let cache {
                // the head alone, on the frozen network's outputs computed once
                let order = trainLoader.order(epoch: epoch)
                step.count = FeatureCache.batchCount(samples: order.count, batchSize: options.batchSize)
                trainer.model = cache.split.head
                defer { trainer.model = fitted.model }
                for i in 0 ..< step.count {
                    step.index = i + 1
                    let b = try cache.train.batch(order: order, index: i, batchSize: options.batchSize)
                    if !b.labels.isEmpty { try train([b.x], b.labels, images: b.labels.count) }
                }
            } else {
                let batches = trainLoader.epoch(epoch)
                step.count = batches.count
                while let batch = try batches.next() {
                    step.index += 1
                    skipped += batch.skipped
                    guard batch.count > 0 else { continue }
                    try checkLabels(batch, validation: false)
                    try train(try inputs(batch), batch.labels, images: batch.count)
                }
            }
            let trainTime = elapsed()
            try schedule?.step()
            try frozen.check(epoch: epoch + 1)
            var validation: EvaluationResult?
            if let validationCache = cache?.validation, let head = cache?.split.head {
                validation = try Evaluation.run(head, of: fitted.model, cache: validationCache, batchSize: options.batchSize)
            } else if let validationLoader {
                validation = try evaluate(validationLoader, epoch: epoch)
            }
            let metrics = EpochMetrics(epoch: epoch + 1, stage: epochStage.index + 1,
                                       trainLoss: images > 0 ? lossSum / Double(images) : .nan,
                                       trainAccuracy: counted > 0 ? Double(correct) / Double(counted) : .nan,
                                       validationLoss: validation?.loss, validationAccuracy: validation?.accuracy,
                                       validationMeanIoU: validation?.meanIoU,
                                       learningRate: learningRate, imagesPerSecond: Double(images) / max(trainTime, 1e-9),
                                       seconds: elapsed(), images: images)
            let isBest = metrics.isBetter(than: best?.score)
            if isBest { best = (metrics.epoch, metrics.score) }
            nextEpoch = epoch + 1
            // the next stage's optimizer is made now, so that a checkpoint taken in `onEpoch`
            // holds what the next epoch trains with
            if nextEpoch < options.epochs, options.stage(ofEpoch: nextEpoch) != stage { try enter(options.stage(ofEpoch: nextEpoch)) }
            trained.append(metrics)
            totalSeconds += metrics.seconds
            trainSeconds += trainTime
            totalImages += images
            try onEpoch(EpochOutcome(metrics: metrics, isBest: isBest, skipped: skipped, fromCachedFeatures: cache != nil))
        }
        return FineTuneSummary(epochs: trained, bestEpoch: best?.epoch, seconds: totalSeconds,
                               imagesPerSecond: trainSeconds > 0 ? Double(totalImages) / trainSeconds : 0, steps: steps)
    }
}

/// The features a stage trains its head on, built once per stage.
struct StageFeatures {
    /// The stage they serve.
    var stage: Int
    /// The head and where it starts.
    var split: HeadSplit
    /// Inputs of the head per training image.
    var train: FeatureCache
    /// Inputs of the head per validation image.
    var validation: FeatureCache?
    /// True in the epoch that built them.
    var builtNow: Bool
}

extension FineTuning {
    /// Whether the current stage trains a head on cached features: without augmentation, with
    /// `cacheFeatures` on, when the trainable parameters form a head (`HeadSplit`) and the
    /// features fit in `featureCacheBytes`. Builds them in the stage's first epoch (reporting
    /// the pass through `onBatch` with `caching` set), drops them when the stage changes.
    /// - Throws: the loaders' `DataError`, the model's errors.
    func cachedFeatures(epoch: Int, onBatch: (BatchProgress) -> Void) throws -> StageFeatures? {
        if var f = features, f.stage == stage.index {
            f.builtNow = false
            features = f
            return f
        }
        features = nil
        guard options.cacheFeatures, !options.augment, let split = HeadSplit.of(fitted.model) else { return nil }
        let total = trainLoader.batchesPerEpoch + (validationLoader?.batchesPerEpoch ?? 0)
        let start = DispatchTime.now().uptimeNanoseconds
        var done = 0
        func report(_: Int, _: Int) {
            done += 1
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            onBatch(BatchProgress(epoch: epoch + 1, epochs: options.epochs, batch: done, batches: total, loss: .nan, accuracy: .nan,
                                  imagesPerSecond: 0, etaSeconds: seconds / Double(done) * Double(total - done), learningRate: 0, caching: true))
        }
        guard let train = try FeatureCache.build(model: fitted.model, split: split, loader: trainLoader,
                                                 byteLimit: options.featureCacheBytes, onBatch: report) else { return nil }
        var validation: FeatureCache?
        if let validationLoader {
            validation = try FeatureCache.build(model: fitted.model, split: split, loader: validationLoader,
                                                byteLimit: options.featureCacheBytes - train.byteCount, onBatch: report)
            if validation == nil { return nil }
        }
        let f = StageFeatures(stage: stage.index, split: split, train: train, validation: validation, builtNow: true)
        features = f
        return f
    }
}
