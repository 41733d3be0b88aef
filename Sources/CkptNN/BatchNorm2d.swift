import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

/// Batch normalisation over the channels of an NCHW tensor, with PyTorch's parameters
/// (`weight`, `bias`) and buffers (`running_mean`, `running_var`, `num_batches_tracked`).
///
/// In eval mode, and when its affine parameters are frozen, it normalises with the running
/// statistics and leaves them alone ("frozen batch norms run in eval mode"); in training mode
/// with trainable parameters — or frozen ones and `batchStatisticsWhenFrozen` — it uses the
/// batch's statistics and updates the running ones (momentum, unbiased variance,
/// `num_batches_tracked`). PyTorch counterpart: `torch.nn.BatchNorm2d` (eps 1e-5, momentum 0.1).
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

    /// In training mode, normalise with the batch's statistics (and update the running ones) even
    /// when the affine parameters are frozen: what torch does for `requires_grad=False` under
    /// `model.train()` (the tutorials' feature extraction), where ckpt's default keeps a frozen norm
    /// in eval mode.
    public var batchStatisticsWhenFrozen = false

    /// True when a forward normalises with the batch's statistics: training mode, and parameters
    /// trainable or `batchStatisticsWhenFrozen`.
    public var usesBatchStatistics: Bool { isTraining && (trainsOwnParameters || batchStatisticsWhenFrozen) }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        try forward(input, relu: nil, context: context)
    }

    /// `relu(bn(x))` in one pass when `relu` is given (the ReLU's tape entry pushed as its own
    /// forward would have pushed it), else `bn(x)`.
    /// - Throws: `KernelError` when the channel count does not match or a training batch has one value per channel.
    public func forward(_ input: DenseTensor, relu: ReLU?, context: ForwardContext) throws -> DenseTensor {
        let flow = gradientFlow(context)
        let y: DenseTensor
        if usesBatchStatistics {
            let (out, batch) = try BatchNormalization.trainingForward(input, weight: weight.value, bias: bias.value, epsilon: epsilon,
                                                                      epilogue: relu == nil ? .none : .relu)
            BatchNormalization.updateRunningStatistics(mean: &runningMean.value, variance: &runningVariance.value,
                                                       batch: batch, momentum: momentum)
            batchesTracked.value.values[0] += 1
            if let flow {
                save(flow.output ? .batchNorm(input: input, mean: batch.mean, inverseStandardDeviation: batch.inverseStandardDeviation,
                                              batchStatistics: true) : .nothing, flow: flow, context: context)
            }
            y = out
        } else {
            if let flow {
                if flow.output {
                    // running statistics: the input (for x̂) only when γ trains (an eval-mode pass of a
                    // trainable norm); a frozen norm inside a trainable region needs only 1/σ
                    let invstd = BatchNormalization.inverseStandardDeviation(runningVariance: runningVariance.value, epsilon: epsilon)
                    save(.batchNorm(input: weight.requiresGrad ? input : nil, mean: runningMean.value.values,
                                    inverseStandardDeviation: invstd, batchStatistics: false), flow: flow, context: context)
                } else {
                    save(.nothing, flow: flow, context: context)
                }
            }
            y = try forward(input, relu: relu != nil)
        }
        if let relu, let reluFlow = relu.gradientFlow(context) {
            relu.save(reluFlow.output ? .tensor(y) : .nothing, flow: reluFlow, context: context)
        }
        return y
    }

    /// Adds `dγ`, `dβ` into trainable parameters and returns `dInput` when needed.
    /// PyTorch counterpart: `native_batch_norm_backward`.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        try backward(dOutput, reluOutput: nil, context: context)
    }

    /// `backward` of `relu(bn(x))` given the ReLU's output (from its tape entry): the ReLU's mask
    /// is applied as the batch norm reads `dOutput`.
    /// - Throws: `NNError.backwardOrder` when the tape is out of step; kernel errors.
    public func backward(_ dOutput: DenseTensor?, reluOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard entry.outputNeedsGradient, let dy = dOutput else { return nil }
        guard case let .batchNorm(input, mean, invstd, batchStatistics) = entry.saved else {
            throw NNError.backwardOrder(path: context.currentPath, expected: "BatchNorm2d statistics", found: "\(entry.saved)")
        }
        let needs = GradientNeeds(input: entry.inputNeedsGradient, weight: weight.requiresGrad && input != nil,
                                  bias: bias.requiresGrad)
        // without the input (γ frozen, running statistics) the kernel's dγ is not asked for: any tensor of dy's shape serves;
        // with batch statistics the ReLU's mask is formed from the input (x̂·γ + β ≤ 0, the forward's own test),
        // one stream fewer to read in both passes
        let maskFromInput = batchStatistics && input != nil && reluOutput != nil
        let g = try BatchNormalization.backward(dy, input: input ?? dy, mean: mean, inverseStandardDeviation: invstd,
                                                weight: weight.value, batchStatistics: batchStatistics, needs: needs,
                                                reluOutput: maskFromInput ? nil : reluOutput,
                                                reluAfterBias: maskFromInput ? bias.value : nil)
        if let dw = g.dWeight { try weight.accumulateGradient(dw) }
        if let db = g.dBias { try bias.accumulateGradient(db) }
        return g.dInput
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
