import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

/// `max(0, x)`, parameter-free; takes a `Sequential` slot like any layer.
/// PyTorch counterpart: `torch.nn.ReLU`.
public final class ReLU: Module {
    /// A ReLU.
    public override init() { super.init() }
    public override var typeName: String { "ReLU" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        Elementwise.relu(input)
    }
}

/// Identity in eval mode; random zeroing in training arrives with the training issue.
/// PyTorch counterpart: `torch.nn.Dropout`.
public final class Dropout: Module {
    /// Probability of zeroing an element in training (`p`).
    public let probability: Float
    /// `nn.Dropout(p)`.
    public init(probability: Float = 0.5) {
        self.probability = probability
        super.init()
    }
    public override var typeName: String { "Dropout" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor { input }
}

/// `[N, …]` → `[N, product of the rest]`. PyTorch counterpart: `torch.nn.Flatten`.
public final class Flatten: Module {
    /// A flatten from dimension 1.
    public override init() { super.init() }
    public override var typeName: String { "Flatten" }
    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        try Elementwise.flatten(input)
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
        try Pooling.maxForward(input, geometry: geometry)
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
        try Pooling.averageForward(input, geometry: geometry)
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
        try Pooling.adaptiveAverageForward(input, outputHeight: outputSize.height, outputWidth: outputSize.width)
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
        try FullyConnected.forward(input, weight: weight.value, bias: bias?.value)
    }

    /// torchinfo's count: `N · (weight.numel() + bias.numel())`.
    public override func multAdds(inputShape: [Int], outputShape: [Int]) -> Int {
        (outputShape.first ?? 0) * (weight.value.shape.reduce(1, *) + (bias?.value.shape.reduce(1, *) ?? 0))
    }
}
