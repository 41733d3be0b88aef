import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

/// `max(0, x)`, parameter-free; takes a `Sequential` slot like any layer.
/// PyTorch counterpart: `torch.nn.ReLU`.
public final class ReLU: Module {
    /// A ReLU.
    public override init() { super.init() }
    public override var typeName: String { "ReLU" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        let y = Elementwise.relu(input)
        if let flow = gradientFlow(context) { save(flow.output ? .tensor(y) : .nothing, flow: flow, context: context) }
        return y
    }
    /// `dy` where the output is positive (needs the output).
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard entry.outputNeedsGradient, entry.inputNeedsGradient, let dy = dOutput, case let .tensor(y) = entry.saved else { return nil }
        return try Elementwise.reluBackward(dy, output: y)
    }
}

/// Identity in eval mode; in training mode each element is zeroed with probability `p` and the
/// rest scaled by `1/(1−p)`, the mask drawn from the context's seeded generator (or given by the
/// context's `dropoutMask`, for tests). PyTorch counterpart: `torch.nn.Dropout`.
public final class Dropout: Module {
    /// Probability of zeroing an element in training (`p`).
    public let probability: Float
    /// `nn.Dropout(p)`.
    public init(probability: Float = 0.5) {
        self.probability = probability
        super.init()
    }
    public override var typeName: String { "Dropout" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        let flow = gradientFlow(context)
        guard isTraining, probability > 0 else {
            if let flow { save(.nothing, flow: flow, context: context) }
            return input
        }
        let mask = context.nextDropoutMask(count: input.count, probability: probability)
        let y = try namingErrors(context) { try Elementwise.multiply(input, mask: mask) }
        if let flow { save(flow.output ? .mask(mask) : .nothing, flow: flow, context: context) }
        return y
    }
    /// `dy · mask`, or `dy` when the forward was the identity.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard entry.outputNeedsGradient, entry.inputNeedsGradient, let dy = dOutput else { return nil }
        if case let .mask(mask) = entry.saved { return try Elementwise.multiply(dy, mask: mask) }
        return dy
    }
}

/// `[N, …]` → `[N, product of the rest]`. PyTorch counterpart: `torch.nn.Flatten`.
public final class Flatten: Module {
    /// A flatten from dimension 1.
    public override init() { super.init() }
    public override var typeName: String { "Flatten" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        if let flow = gradientFlow(context) { save(.shape(input.shape), flow: flow, context: context) }
        return try Elementwise.flatten(input)
    }
    /// `dy` reshaped to the input's shape.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard entry.inputNeedsGradient, let dy = dOutput, case let .shape(shape) = entry.saved else { return nil }
        return try dy.reshaped(shape)
    }
}

/// Max pooling. PyTorch counterpart: `torch.nn.MaxPool2d`.
public final class MaxPool2d: Module {
    /// Window, stride, padding, dilation, ceil mode.
    public let geometry: PoolGeometry
    /// `nn.MaxPool2d(kernelSize, stride, padding, dilation, ceil_mode)`.
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, dilation: Int = 1, ceilMode: Bool = false) {
        geometry = PoolGeometry(kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation, ceilMode: ceilMode)
        super.init()
    }
    public override var typeName: String { "MaxPool2d" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        guard let flow = gradientFlow(context), flow.output else {
            saveNothing(context)
            return try Pooling.maxForward(input, geometry: geometry)
        }
        let (y, indices) = try Pooling.maxForwardWithIndices(input, geometry: geometry)
        save(.maxPool(indices: indices, inputShape: input.shape), flow: flow, context: context)
        return y
    }
    /// Each output gradient to the element that won its window.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard entry.inputNeedsGradient, let dy = dOutput, case let .maxPool(indices, shape) = entry.saved else { return nil }
        return try Pooling.maxBackward(dy, indices: indices, inputShape: shape)
    }
}

/// Average pooling (`count_include_pad=True`). PyTorch counterpart: `torch.nn.AvgPool2d`.
public final class AvgPool2d: Module {
    /// Window, stride, padding, ceil mode.
    public let geometry: PoolGeometry
    /// `nn.AvgPool2d(kernelSize, stride, padding, ceil_mode)`.
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, ceilMode: Bool = false) {
        geometry = PoolGeometry(kernelSize: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode)
        super.init()
    }
    public override var typeName: String { "AvgPool2d" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        if let flow = gradientFlow(context) { save(.shape(input.shape), flow: flow, context: context) }
        return try Pooling.averageForward(input, geometry: geometry)
    }
    /// Each output gradient spread over its window with the forward's divisor.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard entry.inputNeedsGradient, let dy = dOutput, case let .shape(shape) = entry.saved else { return nil }
        return try Pooling.averageBackward(dy, inputShape: shape, geometry: geometry)
    }
}

/// Adaptive average pooling to a fixed output size. PyTorch counterpart: `torch.nn.AdaptiveAvgPool2d`.
public final class AdaptiveAvgPool2d: Module {
    /// Output rows and columns.
    public let outputSize: (height: Int, width: Int)
    /// `nn.AdaptiveAvgPool2d((height, width))`.
    public init(height: Int, width: Int) {
        outputSize = (height, width)
        super.init()
    }
    public override var typeName: String { "AdaptiveAvgPool2d" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        if let flow = gradientFlow(context) { save(.shape(input.shape), flow: flow, context: context) }
        return try Pooling.adaptiveAverageForward(input, outputHeight: outputSize.height, outputWidth: outputSize.width)
    }
    /// Each output gradient spread evenly over its window.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard entry.inputNeedsGradient, let dy = dOutput, case let .shape(shape) = entry.saved else { return nil }
        return try Pooling.adaptiveAverageBackward(dy, inputShape: shape)
    }
}

/// A fully connected layer with `weight` `[out, in]` and optional `bias` `[out]`.
/// PyTorch counterpart: `torch.nn.Linear`.
public final class Linear: Module {
    /// `weight`.
    public let weight: Parameter
    /// `bias`, when the layer has one.
    public let bias: Parameter?

    /// `nn.Linear(inputFeatures, outputFeatures, bias)` with PyTorch's default initialisation.
    public init(_ inputFeatures: Int, _ outputFeatures: Int, bias: Bool = true, rng: inout SeededGenerator) {
        let shape = [outputFeatures, inputFeatures]
        weight = Parameter(Initialization.defaultWeight(shape, using: &rng))
        self.bias = bias ? Parameter(Initialization.defaultBias(outputFeatures, weightShape: shape, using: &rng)) : nil
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    public override var typeName: String { "Linear" }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        saveWeightedInput(input, weight: weight, context: context)
        return try FullyConnected.forward(input, weight: weight.value, bias: bias?.value)
    }

    /// Adds `dWeight`, `dBias` into trainable parameters and returns `dInput` when needed.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        try weightedBackward(dOutput, weight: weight, bias: bias, context: context) { dy, x, needs in
            try FullyConnected.backward(dy, input: x, weight: weight.value, needs: needs)
        }
    }

    /// torchinfo's count: `N · (weight.numel() + bias.numel())`.
    public override func multAdds(inputShape: [Int], outputShape: [Int]) -> Int {
        (outputShape.first ?? 0) * (weight.value.shape.reduce(1, *) + (bias?.value.shape.reduce(1, *) ?? 0))
    }
}
