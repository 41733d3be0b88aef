import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

/// A 2-d convolution layer with `weight` `[C_out, C_in/groups, kH, kW]` and optional `bias` `[C_out]`.
///
/// PyTorch counterpart: `torch.nn.Conv2d`.
public final class Conv2d: Module {
    /// Channels, kernel, stride, padding, dilation and groups.
    public let geometry: Conv2dGeometry
    /// `weight`.
    public let weight: Parameter
    /// `bias`, when the layer has one.
    public let bias: Parameter?
    /// Which kernel computes the convolution.
    public enum Algorithm: Sendable {
        /// Winograd where measured faster, else im2col + GEMM.
        case automatic
        /// Always im2col + GEMM (the reference path).
        case im2col
    }

    /// Kernel choice; `.im2col` reproduces the reference rounding exactly.
    public var algorithm: Algorithm = .automatic
    private var foldCache: (key: [Int], weight: DenseTensor, bias: DenseTensor)?
    private var winogradCache: (key: [Int], weights: WinogradWeights)?
    private var winograd4x4Cache: (key: [Int], weights: Winograd4x4Weights)?
    private var packedCache: (key: [Int], weights: PackedWeights)?

    /// `nn.Conv2d(inputChannels, outputChannels, kernelSize, stride, padding, dilation, groups, bias)`,
    /// initialised as PyTorch does by default (uniform in `±1/sqrt(fan_in)`).
    public init(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true, rng: inout SeededGenerator) {
        geometry = Conv2dGeometry(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
                                  stride: stride, padding: padding, dilation: dilation, groups: groups)
        let shape = geometry.convolutionWeightShape
        weight = Parameter(Initialization.defaultWeight(shape, using: &rng))
        self.bias = bias ? Parameter(Initialization.defaultBias(outputChannels, weightShape: shape, using: &rng)) : nil
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    public override var typeName: String { "Conv2d" }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        // a weight that trains changes every step: its Winograd transform serves this call only
        let fresh = context.isRecording && weight.requiresGrad
        let y = try compute(input, weight: weight.value, bias: bias?.value, key: [weight.version, bias?.version ?? -1], relu: false,
                            freshWeight: fresh)
        saveWeightedInput(input, weight: weight, context: context)
        return y
    }

    /// Adds `dWeight`, `dBias` into trainable parameters and returns `dInput` when needed.
    /// Needs the forward's input when the weight trains. PyTorch counterpart: `Conv2d`'s autograd node.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        try weightedBackward(dOutput, weight: weight, bias: bias, context: context) { dy, x, needs in
            try Convolution.backward(dy, input: x, weight: weight.value, geometry: geometry, needs: needs)
        }
    }

    /// Runs the chosen kernel; `key` identifies the weight so its Winograd transform is cached.
    /// `freshWeight`: the weight is used for this call only (training), so a transform must pay for itself.
    /// `residual` is added before the ReLU (eval only: the training paths never pass one).
    private func compute(_ input: DenseTensor, weight w: DenseTensor, bias b: DenseTensor?, key: [Int], relu: Bool,
                         freshWeight: Bool = false, residual: DenseTensor? = nil) throws -> DenseTensor {
        let epilogue: Convolution.Epilogue = relu ? .relu : .none
        if case .automatic = algorithm, input.rank == 4, input.shape[1] == geometry.inputChannels,
           freshWeight ? Winograd4x4.paysForTrainingTransform(geometry, images: input.shape[0], height: input.shape[2], width: input.shape[3])
                       : Winograd4x4.isFaster(geometry, images: input.shape[0], height: input.shape[2], width: input.shape[3]) {
            let u: Winograd4x4Weights
            if let c = winograd4x4Cache, c.key == key {
                u = c.weights
            } else {
                // a training step's transform on the vectorised path (same bits)
                u = freshWeight ? try Winograd4x4.trainingTransform(weight: w) : try Winograd4x4.transform(weight: w)
                winograd4x4Cache = (key, u)
            }
            return try Winograd4x4.forward(input, weights: u, bias: b, geometry: geometry, epilogue: epilogue, residual: residual)
        }
        if case .automatic = algorithm, input.rank == 4, input.shape[1] == geometry.inputChannels,
           Winograd.isFaster(geometry, height: input.shape[2], width: input.shape[3])
            || !freshWeight && Winograd.isFasterOnMicrokernel(geometry, images: input.shape[0], height: input.shape[2],
                                                              width: input.shape[3]) {
            let u: WinogradWeights
            if let c = winogradCache, c.key == key {
                u = c.weights
            } else {
                u = freshWeight ? try Winograd.trainingTransform(weight: w) : try Winograd.transform(weight: w)
                winogradCache = (key, u)
            }
            return try Winograd.forward(input, weights: u, bias: b, geometry: geometry, epilogue: epilogue, residual: residual)
        }
        var packed: PackedWeights?
        if let c = packedCache, c.key == key {
            packed = c.weights
        } else if let p = freshWeight ? Convolution.packForTraining(weight: w, geometry: geometry)
                                      : Convolution.pack(weight: w, geometry: geometry) {
            packed = p
            packedCache = (key, p)
        }
        return try Convolution.forward(input, weight: w, bias: b, geometry: geometry, epilogue: epilogue, packed: packed,
                                       residual: residual)
    }

    /// `relu(conv(x))` with the ReLU fused into the convolution's write-out.
    /// - Throws: `KernelError` when shapes do not fit.
    public func forwardWithReLU(_ input: DenseTensor) throws -> DenseTensor {
        try compute(input, weight: weight.value, bias: bias?.value, key: [weight.version, bias?.version ?? -1], relu: true)
    }

    /// `relu?(bn(conv(x)))` in one convolution whose weights fold in the eval-mode batch norm.
    /// The folded weights are cached until any of the parameters involved changes.
    /// - Throws: `KernelError` when shapes do not fit.
    public func forwardFolding(_ input: DenseTensor, batchNorm bn: BatchNorm2d, relu: Bool) throws -> DenseTensor {
        let (key, folded) = try folding(bn)
        return try compute(input, weight: folded.weight, bias: folded.bias, key: key, relu: relu)
    }

    /// `relu(bn(conv(x)) + residual)` (ResNet's block tail) in one folded convolution that adds
    /// `residual` and applies the ReLU as it writes its output; eval only.
    /// - Throws: `KernelError` when shapes do not fit (the residual must have the output's shape).
    public func forwardFolding(_ input: DenseTensor, batchNorm bn: BatchNorm2d, addingReLU residual: DenseTensor) throws -> DenseTensor {
        let (key, folded) = try folding(bn)
        return try compute(input, weight: folded.weight, bias: folded.bias, key: key, relu: true, residual: residual)
    }

    /// The weight and bias with `bn` folded in, and the key they are cached under until any of
    /// the parameters involved changes.
    private func folding(_ bn: BatchNorm2d) throws -> (key: [Int], folded: (weight: DenseTensor, bias: DenseTensor)) {
        let key = [ObjectIdentifier(bn).hashValue, weight.version, bias?.version ?? -1, bn.weight.version,
                   bn.bias.version, bn.runningMean.version, bn.runningVariance.version]
        if let c = foldCache, c.key == key { return (key, (c.weight, c.bias)) }
        let (scale, shift) = try bn.affine()
        let folded = try BatchNormalization.fold(convolutionWeight: weight.value, convolutionBias: bias?.value,
                                                 scale: scale, shift: shift)
        foldCache = (key, folded.weight, folded.bias)
        return (key, folded)
    }

    /// torchinfo's count: every weight element once per output pixel of the batch, every bias
    /// element likewise (`N·H_out·W_out · (weight.numel() + bias.numel())`).
    public override func multAdds(inputShape: [Int], outputShape: [Int]) -> Int {
        let pixels = outputShape.count == 4 ? outputShape[0] * outputShape[2] * outputShape[3] : 0
        return pixels * (weight.value.shape.reduce(1, *) + (bias?.value.shape.reduce(1, *) ?? 0))
    }
}

/// A 2-d transposed convolution layer with `weight` `[C_in, C_out/groups, kH, kW]` and optional `bias`.
///
/// PyTorch counterpart: `torch.nn.ConvTranspose2d`.
public final class ConvTranspose2d: Module {
    /// Channels, kernel, stride, padding, output padding, dilation and groups.
    public let geometry: Conv2dGeometry
    /// `weight`.
    public let weight: Parameter
    /// `bias`, when the layer has one.
    public let bias: Parameter?

    /// `nn.ConvTranspose2d(inputChannels, outputChannels, kernelSize, stride, padding, output_padding, groups, bias, dilation)`,
    /// initialised as PyTorch does by default.
    public init(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                outputPadding: Int = 0, groups: Int = 1, bias: Bool = true, dilation: Int = 1, rng: inout SeededGenerator) {
        geometry = Conv2dGeometry(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
                                  stride: stride, padding: padding, dilation: dilation, groups: groups,
                                  outputPadding: outputPadding)
        let shape = geometry.transposedWeightShape
        weight = Parameter(Initialization.defaultWeight(shape, using: &rng))
        self.bias = bias ? Parameter(Initialization.defaultBias(outputChannels, weightShape: shape, using: &rng)) : nil
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    public override var typeName: String { "ConvTranspose2d" }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        let y = try TransposedConvolution.forward(input, weight: weight.value, bias: bias?.value, geometry: geometry)
        saveWeightedInput(input, weight: weight, context: context)
        return y
    }

    /// Adds `dWeight`, `dBias` into trainable parameters and returns `dInput` when needed.
    /// PyTorch counterpart: `ConvTranspose2d`'s autograd node.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        try weightedBackward(dOutput, weight: weight, bias: bias, context: context) { dy, x, needs in
            try TransposedConvolution.backward(dy, input: x, weight: weight.value, geometry: geometry, needs: needs)
        }
    }

    /// torchinfo's count, as for `Conv2d`: `N·H_out·W_out · (weight.numel() + bias.numel())`. It
    /// exceeds the multiplications done (each input meets each tap once, `N·C_in·H·W·C_out/g·kH·kW`)
    /// by the stride squared; ckpt reports torchinfo's number so the two summaries agree.
    public override func multAdds(inputShape: [Int], outputShape: [Int]) -> Int {
        let pixels = outputShape.count == 4 ? outputShape[0] * outputShape[2] * outputShape[3] : 0
        return pixels * (weight.value.shape.reduce(1, *) + (bias?.value.shape.reduce(1, *) ?? 0))
    }

    /// Each input element meets each tap of its group's output channels once.
    public override func arithmeticMultAdds(inputShape: [Int], outputShape: [Int]) -> Int {
        inputShape.reduce(1, *) * (geometry.outputChannels / geometry.groups) * geometry.kernelSize.height * geometry.kernelSize.width
    }
}
