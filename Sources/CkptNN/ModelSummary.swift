import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

/// A torchsummary/torchinfo-style description of a model run on given input shapes: one row per
/// module call, then totals, mult-adds and memory estimates.
public struct ModelSummary: Sendable {
    /// One module call of the traced forward pass.
    public struct Row: Sendable {
        /// Dotted path (`layer1.0.conv1`); calls appear in the order they finished.
        public var path: String
        /// PyTorch class name (`Conv2d`).
        public var typeName: String
        /// Nesting depth, 1 for the model's children.
        public var depth: Int
        /// Output shape, batch included.
        public var outputShape: [Int]
        /// Parameter elements of the module and its descendants (shared ones once); 0 for a repeat.
        public var parameterCount: Int
        /// Of which trainable.
        public var trainableParameterCount: Int
        /// Multiply-adds of this call (leaves only; containers 0).
        public var multAdds: Int
        /// True for a module without children.
        public var isLeaf: Bool
        /// True when this module object already appeared under an earlier name or call
        /// (SegNet's repeated triples, ResNet's reused `relu`): its parameters are not counted again.
        public var isRepeat: Bool
    }

    /// Rows in call-completion order (a container after its children).
    public var rows: [Row]
    /// Distinct parameter elements (`sum(p.numel() for p in model.parameters())`).
    public var totalParameters: Int
    /// Of which trainable.
    public var trainableParameters: Int
    /// Total minus trainable.
    public var nonTrainableParameters: Int { totalParameters - trainableParameters }
    /// Σ multiply-adds over leaf calls, as torchinfo counts them.
    public var multAdds: Int
    /// Σ multiply-adds the leaf calls actually perform (for throughput).
    public var arithmeticMultAdds: Int
    /// Input shapes, batch included.
    public var inputShapes: [[Int]]
    /// Bytes of the float32 inputs.
    public var inputBytes: Int
    /// torchsummary's estimate: 2 × 4 bytes × Σ leaf output elements (activations and gradients).
    public var forwardBackwardBytes: Int
    /// 4 bytes × distinct parameter elements.
    public var parameterBytes: Int
    /// Groups of state-dict keys naming one shared parameter.
    public var sharedKeyGroups: [[String]]
}

extension Module {
    /// Runs an eval-mode forward on zero inputs of `inputShapes` (batch included) without fusion,
    /// recording every module call. PyTorch counterpart: `torchinfo.summary(model, input_size)`.
    /// - Throws: `NNError` when the shapes do not fit the model, naming the layer.
    public func summarize(inputShapes: [[Int]]) throws -> ModelSummary {
        guard inputShapes.count == inputNames.count else {
            throw NNError.inputCount(expected: inputNames, got: inputShapes.count)
        }
        let context = ForwardContext(tracing: true)
        do {
            _ = try forward(inputs: inputShapes.map { DenseTensor(shape: $0) }, context: context)
        } catch let e as KernelError {
            throw NNError.layer(path: "", type: typeName, underlying: e)
        }
        let modules = Dictionary(namedModules().map { (ObjectIdentifier($0.module), $0.module) }, uniquingKeysWith: { a, _ in a })
        var seenModules = Set<ObjectIdentifier>()
        var rows: [ModelSummary.Row] = []
        for e in context.trace ?? [] {
            let repeatCall = !seenModules.insert(e.moduleIdentity).inserted
            var total = 0, trainable = 0
            if !repeatCall, let m = modules[e.moduleIdentity] {
                var seen = Set<ObjectIdentifier>()
                for (_, p) in m.namedParameters() where p.role == .parameter && seen.insert(ObjectIdentifier(p)).inserted {
                    total += p.value.count
                    if p.requiresGrad { trainable += p.value.count }
                }
            }
            rows.append(.init(path: e.path, typeName: e.typeName, depth: e.depth, outputShape: e.outputShape,
                              parameterCount: total, trainableParameterCount: trainable,
                              multAdds: e.isLeaf ? e.multAdds : 0, isLeaf: e.isLeaf, isRepeat: repeatCall))
        }
        var seen = Set<ObjectIdentifier>()
        var total = 0, trainable = 0
        for (_, p) in namedParameters() where p.role == .parameter && seen.insert(ObjectIdentifier(p)).inserted {
            total += p.value.count
            if p.requiresGrad { trainable += p.value.count }
        }
        let leafOutputs = rows.filter(\.isLeaf).reduce(0) { $0 + $1.outputShape.reduce(1, *) }
        return ModelSummary(
            rows: rows, totalParameters: total, trainableParameters: trainable,
            multAdds: rows.reduce(0) { $0 + $1.multAdds },
            arithmeticMultAdds: (context.trace ?? []).reduce(0) { $0 + ($1.isLeaf ? $1.arithmeticMultAdds : 0) },
            inputShapes: inputShapes,
            inputBytes: inputShapes.reduce(0) { $0 + 4 * $1.reduce(1, *) },
            forwardBackwardBytes: 8 * leafOutputs, parameterBytes: 4 * total,
            sharedKeyGroups: sharedKeyGroups())
    }
}
