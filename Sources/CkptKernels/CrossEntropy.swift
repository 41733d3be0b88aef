#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Logits are [N, C] (N samples, C classes) or [N, C, H, W] (N images, C classes, H rows, W
// columns: one sample per pixel). Targets are one class index per sample, flat: N, then H, then W.

/// How a loss folds its per-sample values into what it returns.
///
/// PyTorch counterpart: the `reduction=` argument of its losses.
public enum LossReduction: String, Sendable, Hashable, CaseIterable {
    /// The sum divided by the total weight of the samples that count (`'mean'`).
    case mean
    /// The sum over samples (`'sum'`).
    case sum
    /// One value per sample: `[N]`, or `[N, H, W]` per pixel (`'none'`).
    case none
}

/// Cross-entropy between logits and class-index targets: log-softmax over the class dimension,
/// then the weighted negative log-likelihood, optionally mixed with a uniform target.
///
/// Per sample `i` of target `t` with log-probabilities `lp = log_softmax(x_i)`, weights `w`
/// (all 1 without class weights), `ε = labelSmoothing` and `C` classes:
/// `ℓ_i = (1 − ε)·w[t]·(−lp[t]) + (ε / C)·Σ_c w[c]·(−lp[c])`, and `ℓ_i = 0` when `t` is the
/// ignore index. `.mean` divides `Σ ℓ_i` by `Σ w[t_i]` over the samples not ignored (NaN when
/// every sample is ignored), for both terms, as ATen's `cross_entropy_loss_label_smoothing`
/// normalises its smoothing term like `nll_loss`. Sums run in Double.
/// The backward needs only the logits and targets: softmax is recomputed, nothing is cached.
/// PyTorch counterpart: `torch.nn.CrossEntropyLoss` / `torch.nn.functional.cross_entropy` with
/// class-index targets.
public struct CrossEntropy: Sendable, Hashable {
    /// How the per-sample losses are combined (`reduction`).
    public var reduction: LossReduction
    /// Weight of the uniform target, in `[0, 1]` (`label_smoothing`).
    public var labelSmoothing: Float
    /// One rescaling weight per class, or nil for all 1 (`weight`).
    public var classWeights: [Float]?
    /// A target value whose samples count for nothing, in loss, gradient and mean (`ignore_index`).
    public var ignoreIndex: Int

    /// Options as `torch.nn.CrossEntropyLoss(weight, ignore_index, reduction, label_smoothing)`,
    /// with torch's defaults.
    public init(reduction: LossReduction = .mean, labelSmoothing: Float = 0, classWeights: [Float]? = nil,
                ignoreIndex: Int = -100) {
        self.reduction = reduction
        self.labelSmoothing = labelSmoothing
        self.classWeights = classWeights
        self.ignoreIndex = ignoreIndex
    }

    /// The loss: 0-dimensional for `.mean` and `.sum`, `[N]` or `[N, H, W]` for `.none`.
    /// - Throws: `KernelError` when the logits are not `[N, C]` or `[N, C, H, W]` with `C ≥ 1`,
    ///   the targets are not one per sample, a target is neither a class nor `ignoreIndex`, the
    ///   weights are not one per class, or the smoothing is outside `[0, 1]`.
    public func forward(_ logits: DenseTensor, targets: [Int]) throws -> DenseTensor {
        let plan = try Plan(self, logits: logits, targets: targets)
        return run(plan, logits: logits, targets: targets, dLoss: nil).loss
    }

    /// `dLogits`, the gradient of the loss with respect to `logits` (same shape), given `dLoss`,
    /// the gradient with respect to the loss: shape `[]` (or `[1]`) for `.mean` and `.sum`,
    /// the loss's shape for `.none`.
    /// - Throws: `KernelError` for the inputs `forward` rejects, or a `dLoss` of the wrong shape.
    public func backward(_ logits: DenseTensor, targets: [Int], dLoss: DenseTensor) throws -> DenseTensor {
        try forwardBackward(logits, targets: targets, dLoss: dLoss).dLogits
    }

    /// `backward` with a scalar `dLoss` (1 for the loss itself), for `.mean` and `.sum`.
    /// - Throws: `KernelError` for the inputs `forward` rejects, or when the reduction is `.none`.
    public func backward(_ logits: DenseTensor, targets: [Int], dLoss: Float = 1) throws -> DenseTensor {
        try backward(logits, targets: targets, dLoss: DenseTensor(uncheckedShape: [], values: [dLoss]))
    }

    /// The loss and `dLogits` in one pass over the logits: what a training step calls.
    /// - Throws: `KernelError` for the inputs `forward` rejects, or a `dLoss` of the wrong shape.
    public func forwardBackward(_ logits: DenseTensor, targets: [Int], dLoss: DenseTensor) throws
        -> (loss: DenseTensor, dLogits: DenseTensor) {
        let plan = try Plan(self, logits: logits, targets: targets)
        let scalar = dLoss.rank <= 1 && dLoss.count == 1
        guard reduction == .none ? dLoss.shape == plan.lossShape : scalar else {
            let expected = reduction == .none ? "\(plan.lossShape) (the loss of reduction none)"
                : "[] (the loss of reduction \(reduction.rawValue))"
            throw KernelError.shapeMismatch(operation: "cross_entropy backward", operand: "upstream gradient",
                                            expected: expected, got: dLoss.shape)
        }
        let result = run(plan, logits: logits, targets: targets, dLoss: dLoss)
        let dLogits = result.dLogits ?? DenseTensor(shape: logits.shape)
        return (result.loss, dLogits)
    }

    /// `forwardBackward` with a scalar `dLoss` (1 for the loss itself), for `.mean` and `.sum`.
    /// - Throws: `KernelError` for the inputs `forward` rejects, or when the reduction is `.none`.
    public func forwardBackward(_ logits: DenseTensor, targets: [Int], dLoss: Float = 1) throws
        -> (loss: DenseTensor, dLogits: DenseTensor) {
        try forwardBackward(logits, targets: targets, dLoss: DenseTensor(uncheckedShape: [], values: [dLoss]))
    }
}

extension CrossEntropy {
    /// The checked inputs of one call: layout, weights and the mean's denominator.
    struct Plan {
        let layout: ClassLayout
        /// Class weights in Double, or nil for all 1.
        let weights: [Double]?
        /// `Σ w[c]` over all classes: the smoothing term's share of each softmax gradient.
        let weightSum: Double
        /// `Σ w[t_i]` over the samples not ignored: what `.mean` divides by.
        let totalWeight: Double
        /// Shape of the `.none` loss: `[N]` or `[N, H, W]`.
        let lossShape: [Int]

        /// Checks every input before any work, so a bad call fails whole.
        init(_ options: CrossEntropy, logits: DenseTensor, targets: [Int]) throws {
            let op = "cross_entropy", shape = logits.shape
            guard shape.count == 2 || shape.count == 4 else {
                throw KernelError.shapeMismatch(operation: op, operand: "input", expected: "[N, C] or [N, C, H, W]", got: shape)
            }
            guard shape[1] >= 1 else {
                throw KernelError.shapeMismatch(operation: op, operand: "input", expected: "at least one class in dimension 1",
                                                got: shape)
            }
            let layout = ClassLayout(shape: shape, classDimension: 1)
            let classes = layout.classes
            guard targets.count == layout.samples else {
                let per = shape.count == 2 ? "N" : "N·H·W"
                throw KernelError.shapeMismatch(operation: op, operand: "target", expected: "[\(layout.samples)] (\(per) of input \(shape))",
                                                got: [targets.count])
            }
            let smoothing = options.labelSmoothing
            guard smoothing >= 0, smoothing <= 1 else {
                throw KernelError.invalidArgument(operation: op, message: "label smoothing \(smoothing) is outside [0, 1]")
            }
            if let w = options.classWeights, w.count != classes {
                throw KernelError.shapeMismatch(operation: op, operand: "weight", expected: "[\(classes)] (one per class)", got: [w.count])
            }
            let weights = options.classWeights.map { $0.map(Double.init) }
            var total = 0.0
            for (i, t) in targets.enumerated() where t != options.ignoreIndex {
                guard t >= 0, t < classes else {
                    throw KernelError.invalidArgument(operation: op, message: "target \(t) at index \(i)\(Self.pixel(i, shape)) "
                        + "is out of bounds, expected a class in 0..<\(classes) or ignore index \(options.ignoreIndex)")
                }
                total += weights?[t] ?? 1
            }
            self.layout = layout
            self.weights = weights
            self.weightSum = weights?.reduce(0, +) ?? Double(classes)
            self.totalWeight = total
            self.lossShape = shape.count == 2 ? [shape[0]] : [shape[0], shape[2], shape[3]]
        }

        /// Where flat target index `i` sits in an `[N, C, H, W]` input: " (image n, row y, column x)".
        static func pixel(_ i: Int, _ shape: [Int]) -> String {
            guard shape.count == 4 else { return "" }
            let plane = shape[2] * shape[3]
            return " (image \(i / plane), row \(i % plane / shape[3]), column \(i % shape[3]))"
        }
    }

    /// The loss, and when `dLoss` is given the gradient, sample by sample in parallel parts.
    ///
    /// With `k` the upstream factor of sample `i` (`dLoss / Σ w[t]` for `.mean`, `dLoss` for
    /// `.sum`, `dLoss[i]` for `.none`) and `p = softmax(x_i)`:
    /// `dx[c] = k·((1 − ε)·w[t]·(p[c] − [c = t]) + (ε/C)·(p[c]·Σ w − w[c]))`; ignored samples get 0.
    private func run(_ plan: Plan, logits: DenseTensor, targets: [Int], dLoss: DenseTensor?)
        -> (loss: DenseTensor, dLogits: DenseTensor?) {
        let layout = plan.layout
        let classes = layout.classes, inner = layout.inner
        let eps = Double(labelSmoothing), uniform = Double(labelSmoothing) / Double(classes)
        let reduction = reduction, ignore = ignoreIndex
        let perSample = reduction == .none
        var losses = perSample ? [Float].uninitialized(layout.samples) : []
        var partials = [Double](repeating: 0, count: max(layout.partCount, 1))
        let wantsGradient = dLoss != nil
        var gradient = wantsGradient ? [Float].uninitialized(logits.count) : []
        // a scalar upstream is the same factor for every sample
        let scale: Double = switch reduction {
        case .mean: Double(dLoss?.values[0] ?? 0) / plan.totalWeight
        case .sum: Double(dLoss?.values[0] ?? 0)
        case .none: 0
        }
        let upstream = perSample ? dLoss?.values ?? [] : []
        logits.values.withUnsafeBufferPointer { xb in
            losses.withUnsafeMutableBufferPointer { lb in
                partials.withUnsafeMutableBufferPointer { pb in
                    gradient.withUnsafeMutableBufferPointer { gb in
                        let box = UncheckedSendable((xb, lb, pb, gb))
                        layout.forEachPart { part, samples, e in
                            let (xb, lb, pb, gb) = box.value
                            guard let x = xb.baseAddress else { return }
                            // an empty array may still have a base address: ask the flag
                            let g = wantsGradient ? gb.baseAddress : nil
                            var sum = 0.0
                            for s in samples {
                                let base = layout.base(of: s)
                                let t = targets[s]
                                if t == ignore {
                                    if perSample { lb[s] = 0 }
                                    if let g { for c in 0 ..< classes { g[base + c * inner] = 0 } }
                                    continue
                                }
                                let (top, total) = layout.exponentials(x + base, into: e)
                                let logSum = top + log(total)
                                let wt = plan.weights?[t] ?? 1
                                var loss = (1 - eps) * wt * (logSum - Double(x[base + t * inner]))
                                // without smoothing torch never forms this term (−inf logits stay finite)
                                if eps > 0 {
                                    var smooth = 0.0
                                    for c in 0 ..< classes {
                                        smooth += (plan.weights?[c] ?? 1) * (logSum - Double(x[base + c * inner]))
                                    }
                                    loss += uniform * smooth
                                }
                                sum += loss
                                if perSample { lb[s] = Float(loss) }
                                guard let g else { continue }
                                let k = perSample ? Double(upstream[s]) : scale
                                let inverse = 1 / total, hard = (1 - eps) * wt
                                for c in 0 ..< classes {
                                    // the two terms apart: with one class each is exactly 0, as in torch
                                    let p = e[c] * inverse
                                    var d = hard * (c == t ? p - 1 : p)
                                    if eps > 0 { d += uniform * (p * plan.weightSum - (plan.weights?[c] ?? 1)) }
                                    g[base + c * inner] = Float(k * d)
                                }
                            }
                            pb[part] = sum
                        }
                    }
                }
            }
        }
        let dLogits = wantsGradient ? DenseTensor(uncheckedShape: logits.shape, values: gradient) : nil
        if perSample { return (DenseTensor(uncheckedShape: plan.lossShape, values: losses), dLogits) }
        let total = partials.reduce(0, +)
        let value = reduction == .mean ? total / plan.totalWeight : total
        return (DenseTensor(uncheckedShape: [], values: [Float(value)]), dLogits)
    }
}
