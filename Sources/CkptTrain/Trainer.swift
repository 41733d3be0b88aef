import CkptKernels
import CkptNN
import CkptTensor
import Dispatch

// N images, C channels, H rows, W columns (NCHW).

/// One training step's result.
public struct StepOutcome: Sendable {
    /// The loss of the batch (before the update).
    public var loss: Float
    /// The model's output for the batch.
    public var output: DenseTensor
    /// `∂L/∂input` per model input, when asked for.
    public var inputGradients: [DenseTensor?]
    /// Bytes of activations the forward kept for the backward.
    public var tapeBytes: Int
    /// Per-layer times (forward and backward), when profiling.
    public var profile: [ForwardContext.ProfileEntry]
}

/// Runs training steps on a model: forward with a tape, cross-entropy, backward, optimizer.
///
/// The model trains in training mode; which parameters train is their `requiresGrad` (set by
/// `TrainableSelection`); batch norms whose parameters are frozen run in eval mode and keep
/// their statistics, unless `BatchNorm2d.batchStatisticsWhenFrozen` (torch's `model.train()`). A step whose loss or gradients are not finite stops before changing
/// anything (weights, optimizer state and batch-norm statistics are as before the step).
/// PyTorch counterpart: the body of a tutorial's `for inputs, labels in loader:` loop.
public final class Trainer {
    /// The module each step runs: the model, or a head of it training on cached features
    /// (`HeadSplit`), whose parameters are the model's own.
    public var model: Module
    /// The optimizer over the trainable parameters.
    public var optimizer: (any Optimizer)?
    /// The loss.
    public var loss: CrossEntropy
    /// Steps taken so far.
    public private(set) var stepCount = 0
    /// Dropout masks for tests (see `ForwardContext.dropoutMask`), given the step number from 0.
    public var dropoutMask: ((Int) -> (String, Int, Int) -> [Float])?
    /// Seeds the dropout masks of step `t` with `seed + t`.
    public var seed: UInt64 = 0

    /// A trainer for `model` with `optimizer` and the cross-entropy `loss`; puts the model in training mode.
    public init(model: Module, optimizer: (any Optimizer)?, loss: CrossEntropy = CrossEntropy()) {
        self.model = model
        self.optimizer = optimizer
        self.loss = loss
        model.setTraining(true)
    }

    /// Forward, loss and backward on one batch, leaving the gradients on the parameters (added
    /// to what is there: call `zeroGradients` first for a fresh step). Changes no weight; trainable
    /// batch norms update their running statistics as torch's do in training mode.
    /// - Throws: `TrainingError.targetCount`, kernel and module errors naming the layer.
    public func computeGradients(inputs: [DenseTensor], targets: [Int], inputsNeedGradient: Bool = false,
                                 profiling: Bool = false) throws -> StepOutcome {
        let context = ForwardContext(profiling: profiling, recording: true, inputNeedsGradient: inputsNeedGradient,
                                     seed: seed &+ UInt64(stepCount))
        context.dropoutMask = dropoutMask?(stepCount)
        let y = try model.forward(inputs: inputs, context: context)
        let perSample = y.rank == 4 ? y.shape[0] * y.shape[2] * y.shape[3] : y.shape.first ?? 0
        guard targets.count == perSample else { throw TrainingError.targetCount(expected: perSample, got: targets.count) }
        let (l, dy) = try loss.forwardBackward(y, targets: targets)
        let bytes = context.tapeBytes
        let lossValue = l.values.first ?? .nan
        // a non-finite loss needs no backward: the step stops here
        if !lossValue.isFinite {
            return StepOutcome(loss: lossValue, output: y, inputGradients: [], tapeBytes: bytes, profile: context.profile ?? [])
        }
        let dx = try model.backward(inputs: dy, context: context)
        return StepOutcome(loss: lossValue, output: y, inputGradients: dx, tapeBytes: bytes, profile: context.profile ?? [])
    }

    /// One optimizer step on a batch: zero the gradients, forward, loss, backward, check that the
    /// loss and every gradient are finite, update.
    /// - Throws: `TrainingError.nonFiniteLoss` / `.nonFiniteGradient` naming the step (nothing
    ///   changed, batch-norm statistics restored); what `computeGradients` and the optimizer throw.
    @discardableResult
    public func step(inputs: [DenseTensor], targets: [Int], profiling: Bool = false) throws -> StepOutcome {
        zeroGradients()
        let buffers = model.namedParameters().filter { $0.parameter.role == .buffer }.map { ($0.parameter, $0.parameter.value) }
        func restoreBuffers() { for (p, v) in buffers where p.value != v { p.value = v } }
        let outcome: StepOutcome
        do {
            outcome = try computeGradients(inputs: inputs, targets: targets, profiling: profiling)
        } catch {
            restoreBuffers()
            throw error
        }
        guard outcome.loss.isFinite else {
            restoreBuffers()
            zeroGradients()
            throw TrainingError.nonFiniteLoss(step: stepCount + 1, value: outcome.loss)
        }
        for (key, p) in model.namedParameters() where p.gradient.map({ !allFinite($0.values) }) == true {
            restoreBuffers()
            zeroGradients()
            throw TrainingError.nonFiniteGradient(step: stepCount + 1, key: key)
        }
        let start = DispatchTime.now().uptimeNanoseconds
        try optimizer?.step()
        stepCount += 1
        var result = outcome
        if profiling {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            result.profile.append(ForwardContext.ProfileEntry(path: "(optimizer)", typeName: "optimizer step", outputShape: [], seconds: seconds))
        }
        return result
    }

    /// Forgets every parameter's gradient.
    public func zeroGradients() {
        for (_, p) in model.namedParameters() { p.zeroGradient() }
    }
}

/// True when no value is a NaN or an infinity: `Σ (v − v)` is 0 exactly then (NaN otherwise), in
/// sixteen lanes, slices over the cores (vgg's classifier gradient alone is 100 M values).
func allFinite(_ values: [Float]) -> Bool {
    typealias V = SIMD16<Float>
    let slice = 1 << 18
    let parts = (values.count + slice - 1) / slice
    var sums = [Float](repeating: 0, count: parts)
    values.withUnsafeBufferPointer { vb in
        sums.withUnsafeMutableBufferPointer { sb in
            guard let v = vb.baseAddress, let s = sb.baseAddress else { return }
            let box = UncheckedSendable((v, s))
            parallelFor(parts) { part in
                let (v, s) = box.value
                let end = min(values.count, (part + 1) * slice)
                var acc = V()
                var i = part * slice
                while i + 16 <= end {
                    let x = UnsafeRawPointer(v + i).loadUnaligned(as: V.self)
                    acc += x - x
                    i += 16
                }
                var tail = acc.sum()
                while i < end { tail += v[i] - v[i]; i += 1 }
                s[part] = tail
            }
        }
    }
    return sums.allSatisfy { $0 == 0 }
}
