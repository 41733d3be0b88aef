import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

/// What one module call of a training pass kept for its backward.
///
/// Forwards push, backwards pop, in mirror order (the tape is a stack): a module that runs
/// several times in one pass (ResNet's `relu`, SegNet's shared triples) gets one entry per call,
/// and nothing is ever kept on the module itself.
public enum Saved: @unchecked Sendable {
    /// Nothing (the call needs no gradient, or its backward needs no values).
    case nothing
    /// One tensor: a convolution's or linear's input, a ReLU's output.
    case tensor(DenseTensor)
    /// A batch norm's input (nil when no parameter gradient needs x̂), the mean and
    /// `1/sqrt(var + eps)` it was normalised with, from which the backward forms x̂ again (the
    /// forward writes no x̂); `batchStatistics` when the batch's own statistics normalised it.
    case batchNorm(input: DenseTensor?, mean: [Float], inverseStandardDeviation: [Float], batchStatistics: Bool)
    /// Max pooling's winning positions and the input's shape.
    case maxPool(indices: [Int32], inputShape: [Int])
    /// A shape (pooling and flatten inputs).
    case shape([Int])
    /// Several shapes (the parts of a concatenation).
    case shapes([[Int]])
    /// A dropout mask (0 or `1/(1−p)` per element).
    case mask([Float])

    /// Bytes this entry keeps alive.
    var byteCount: Int {
        switch self {
        case .nothing, .shape, .shapes: return 0
        case let .tensor(t): return t.count * 4
        case let .batchNorm(x, m, s, _): return (x?.count ?? 0) * 4 + (m.count + s.count) * 4
        case let .maxPool(i, _): return i.count * 4
        case let .mask(m): return m.count * 4
        }
    }
}

/// One module call's record on the tape.
public struct TapeEntry: @unchecked Sendable {
    /// The module that pushed it (checked when popped).
    var module: ObjectIdentifier
    /// Whether the call's input needed a gradient (else its backward returns none).
    public var inputNeedsGradient: Bool
    /// Whether the call's output needed a gradient (else its backward does nothing at all).
    public var outputNeedsGradient: Bool
    /// What the backward needs.
    public var saved: Saved
}

extension Module {
    /// True when any own parameter (not a child's) trains.
    public var trainsOwnParameters: Bool {
        ownParameters.contains { $0.parameter.role == .parameter && $0.parameter.requiresGrad }
    }

    /// True when any parameter of this module or below trains.
    public var trainsAnyParameter: Bool {
        namedParameters().contains { $0.parameter.role == .parameter && $0.parameter.requiresGrad }
    }

    /// For a leaf's forward in a recording pass: whether its input and output need gradients
    /// (the output does when the input does or an own parameter trains), with the flow updated.
    /// Nil outside a recording pass.
    func gradientFlow(_ context: ForwardContext) -> (input: Bool, output: Bool)? {
        guard context.isRecording else { return nil }
        let input = context.flowNeedsGradient
        let output = input || trainsOwnParameters
        context.flowNeedsGradient = output
        return (input, output)
    }

    /// Pushes this call's tape entry.
    func save(_ saved: Saved, flow: (input: Bool, output: Bool), context: ForwardContext) {
        context.push(TapeEntry(module: ObjectIdentifier(self), inputNeedsGradient: flow.input,
                               outputNeedsGradient: flow.output, saved: saved))
    }

    /// Pushes an entry saying this call needs no gradient (a frozen layer run on a fused or
    /// eval-only path), so the backward's pops stay in step.
    func saveNothing(_ context: ForwardContext) {
        guard context.isRecording else { return }
        context.push(TapeEntry(module: ObjectIdentifier(self), inputNeedsGradient: false, outputNeedsGradient: false,
                               saved: .nothing))
    }

    /// The forward's half of a layer with a weight: keeps the input when the weight trains (for
    /// `dWeight`), only its shape otherwise (`dInput` needs just the weight).
    func saveWeightedInput(_ input: DenseTensor, weight: Parameter, context: ForwardContext) {
        guard let flow = gradientFlow(context) else { return }
        save(!flow.output ? .nothing : weight.requiresGrad ? .tensor(input) : .shape(input.shape), flow: flow, context: context)
    }

    /// The backward's half of a layer with a weight and an optional bias: pops the entry, asks
    /// `kernel(dOutput, input, needs)` for what is needed (a frozen weight's input is a shape-only
    /// placeholder), adds `dWeight` and `dBias` into the trainable parameters, returns `dInput`.
    /// - Throws: `NNError.backwardOrder` when the tape is out of step; what the kernel throws.
    func weightedBackward(_ dOutput: DenseTensor?, weight: Parameter, bias: Parameter?, context: ForwardContext,
                          kernel: (DenseTensor, DenseTensor, GradientNeeds) throws -> LayerGradients) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard entry.outputNeedsGradient, let dy = dOutput else { return nil }
        let needs = GradientNeeds(input: entry.inputNeedsGradient, weight: weight.requiresGrad, bias: bias?.requiresGrad ?? false)
        let input: DenseTensor
        switch entry.saved {
        case let .tensor(x): input = x
        case let .shape(shape) where !needs.weight: input = DenseTensor(placeholderShape: shape)
        default: throw NNError.backwardOrder(path: context.currentPath, expected: "\(typeName) input", found: "\(entry.saved)")
        }
        let g = try kernel(dy, input, needs)
        if let dw = g.dWeight { try weight.accumulateGradient(dw) }
        if let db = g.dBias, let b = bias { try b.accumulateGradient(db) }
        return g.dInput
    }
}
