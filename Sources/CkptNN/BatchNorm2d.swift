import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

/// Batch normalisation over the channels of an NCHW tensor, with PyTorch's parameters
/// (`weight`, `bias`) and buffers (`running_mean`, `running_var`, `num_batches_tracked`).
///
/// The forward uses the running statistics (eval mode); training-mode statistics arrive with
/// the backward passes. PyTorch counterpart: `torch.nn.BatchNorm2d` (eps 1e-5, momentum 0.1).
public final class BatchNorm2d: Module {
    /// γ, `[C]`.
    public let weight: Parameter
    /// β, `[C]`.
    public let bias: Parameter
    /// `running_mean`, `[C]`.
    public let runningMean: Parameter
    /// `running_var`, `[C]`.
    public let runningVariance: Parameter
    /// `num_batches_tracked`, an int64 scalar.
    public let batchesTracked: Parameter
    /// `eps`.
    public let epsilon: Float
    /// `momentum`.
    public let momentum: Float

    /// `nn.BatchNorm2d(channels)`: γ = 1, β = 0, mean 0, variance 1.
    public init(_ channels: Int, epsilon: Float = 1e-5, momentum: Float = 0.1) {
        weight = Parameter(DenseTensor(shape: [channels], repeating: 1))
        bias = Parameter(DenseTensor(shape: [channels]))
        runningMean = Parameter(DenseTensor(shape: [channels]), role: .buffer)
        runningVariance = Parameter(DenseTensor(shape: [channels], repeating: 1), role: .buffer)
        batchesTracked = Parameter(DenseTensor(shape: []), role: .buffer, dtype: .int64)
        self.epsilon = epsilon
        self.momentum = momentum
        super.init()
        register("weight", weight)
        register("bias", bias)
        register("running_mean", runningMean)
        register("running_var", runningVariance)
        register("num_batches_tracked", batchesTracked)
    }

    public override var typeName: String { "BatchNorm2d" }

    /// Per-channel `scale`, `shift` with `bn(x) = scale·x + shift` in eval mode.
    /// - Throws: `KernelError.shapeMismatch` when the parameter lengths differ.
    public func affine() throws -> (scale: [Float], shift: [Float]) {
        try BatchNormalization.affine(weight: weight.value, bias: bias.value, runningMean: runningMean.value,
                                      runningVariance: runningVariance.value, epsilon: epsilon)
    }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        try forward(input, relu: false)
    }

    /// `relu?(bn(x))` in one pass.
    /// - Throws: `KernelError` when the channel count does not match.
    public func forward(_ input: DenseTensor, relu: Bool) throws -> DenseTensor {
        try BatchNormalization.forward(input, weight: weight.value, bias: bias.value, runningMean: runningMean.value,
                                       runningVariance: runningVariance.value, epsilon: epsilon,
                                       epilogue: relu ? .relu : .none)
    }

    /// torchinfo's count: the affine parameters once per image, `N · 2C`.
    public override func multAdds(inputShape: [Int], outputShape: [Int]) -> Int {
        (inputShape.first ?? 0) * 2 * (inputShape.count > 1 ? inputShape[1] : 0)
    }
}
