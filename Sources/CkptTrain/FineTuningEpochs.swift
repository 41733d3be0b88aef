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
}

/// What one finished epoch reports: its metrics, whether it is the best so far (its weights
/// then belong in `OUT`), and the images its batches left out.
public struct EpochOutcome: Sendable {
    /// The epoch's metrics.
    public var metrics: FineTuneEpoch
    /// True when this epoch scores best so far (`FineTuneEpoch.isBetter`).
    public var isBest: Bool
    /// Images left out of training or validation batches this epoch (`skipBadImages`).
    public var skipped: [SkippedImage]
}

/// The whole of a finished run (the epochs this call trained).
public struct FineTuneSummary: Sendable {
    /// Every epoch trained by this call, in order.
    public var epochs: [FineTuneEpoch]
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
        var trained: [FineTuneEpoch] = []
        var totalSeconds = 0.0, trainSeconds = 0.0
        var totalImages = 0
        while nextEpoch < options.epochs {
            let epoch = nextEpoch
            let epochStage = options.stage(ofEpoch: epoch)
            if epochStage != stage { try enter(epochStage) }
            let start = DispatchTime.now().uptimeNanoseconds
            func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
            let learningRate = trainer.optimizer?.groups.first?.learningRate ?? 0
            var lossSum = 0.0
            var correct = 0, images = 0
            var skipped: [SkippedImage] = []
            let batches = trainLoader.epoch(epoch)
            var index = 0
            while let batch = try batches.next() {
                index += 1
                skipped += batch.skipped
                guard batch.count > 0 else { continue }
                let x = try DenseTensor(shape: batch.shape, values: batch.images)
                let outcome: StepOutcome
                do {
                    outcome = try trainer.step(inputs: [x], targets: batch.labels)
                } catch let TrainingError.nonFiniteLoss(_, value) {
                    throw TrainingError.stopped(epoch: epoch + 1, batch: index, step: steps + 1,
                                                reason: "the loss is \(value.isNaN ? "nan" : String(describing: value)) (not finite); stopped before changing any weight (lower the learning rate?)")
                } catch let TrainingError.nonFiniteGradient(_, key) {
                    throw TrainingError.stopped(epoch: epoch + 1, batch: index, step: steps + 1,
                                                reason: "the gradient of \(key) is not finite; stopped before changing any weight (lower the learning rate?)")
                }
                steps += 1
                lossSum += Double(outcome.loss) * Double(batch.count)
                correct += Evaluation.correctCount(outcome.output, targets: batch.labels)
                images += batch.count
                let seconds = elapsed()
                onBatch(BatchProgress(epoch: epoch + 1, epochs: options.epochs, batch: index, batches: batches.count,
                                      loss: lossSum / Double(images), accuracy: Double(correct) / Double(images),
                                      imagesPerSecond: Double(images) / max(seconds, 1e-9),
                                      etaSeconds: seconds / Double(index) * Double(batches.count - index), learningRate: learningRate))
            }
            let trainTime = elapsed()
            try schedule?.step()
            try frozen.check(epoch: epoch + 1)
            var validation: EvaluationResult?
            if let validationLoader {
                validation = try Evaluation.run(fitted.model, loader: validationLoader, epoch: epoch)
            }
            let metrics = FineTuneEpoch(epoch: epoch + 1, stage: epochStage.index + 1,
                                       trainLoss: images > 0 ? lossSum / Double(images) : .nan,
                                       trainAccuracy: images > 0 ? Double(correct) / Double(images) : .nan,
                                       validationLoss: validation?.loss, validationAccuracy: validation?.accuracy,
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
            try onEpoch(EpochOutcome(metrics: metrics, isBest: isBest, skipped: skipped))
        }
        return FineTuneSummary(epochs: trained, bestEpoch: best?.epoch, seconds: totalSeconds,
                               imagesPerSecond: trainSeconds > 0 ? Double(totalImages) / trainSeconds : 0, steps: steps)
    }
}
