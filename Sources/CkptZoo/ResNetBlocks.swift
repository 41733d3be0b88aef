import CkptKernels
import CkptNN

// N images, C channels, H rows, W columns (NCHW).

/// The two-convolution residual block of resnet18/34.
/// PyTorch counterpart: `torchvision.models.resnet.BasicBlock`.
public final class BasicBlock: Module {
    /// Output channels are `planes × expansion`.
    public static let expansion = 1
    let conv1: Conv2d, bn1: BatchNorm2d, relu: ReLU, conv2: Conv2d, bn2: BatchNorm2d
    let downsample: Sequential?

    /// `BasicBlock(inplanes, planes, stride, downsample)`.
    init(inputChannels: Int, planes: Int, stride: Int, downsample: Sequential?, rng: inout SeededGenerator) {
        conv1 = Conv2d(inputChannels, planes, kernelSize: 3, stride: stride, padding: 1, bias: false, rng: &rng)
        bn1 = BatchNorm2d(planes)
        relu = ReLU()
        conv2 = Conv2d(planes, planes, kernelSize: 3, padding: 1, bias: false, rng: &rng)
        bn2 = BatchNorm2d(planes)
        self.downsample = downsample
        super.init()
        register("conv1", conv1)
        register("bn1", bn1)
        register("relu", relu)
        register("conv2", conv2)
        register("bn2", bn2)
        if let d = downsample { register("downsample", d) }
    }

    public override var typeName: String { "BasicBlock" }

    /// `conv1 bn1 relu`, `conv2 bn2`.
    var stages: [ResidualStage] {
        [ResidualStage(conv1, "conv1", bn1, "bn1", relu: true), ResidualStage(conv2, "conv2", bn2, "bn2", relu: false)]
    }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        try residualForward(stages, relu: relu, downsample: downsample, input, context: context)
    }

    /// Mirrors `forward`.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        try residualBackward(stages, relu: relu, downsample: downsample, dOutput, context: context)
    }
}

/// The 1×1–3×3–1×1 residual block of resnet50+ and ResNeXt / wide ResNet (stride on the 3×3).
/// PyTorch counterpart: `torchvision.models.resnet.Bottleneck`.
public final class Bottleneck: Module {
    /// Output channels are `planes × expansion`.
    public static let expansion = 4
    let conv1: Conv2d, bn1: BatchNorm2d, conv2: Conv2d, bn2: BatchNorm2d, conv3: Conv2d, bn3: BatchNorm2d
    let relu: ReLU
    let downsample: Sequential?

    /// `Bottleneck(inplanes, planes, stride, downsample, groups, base_width)`:
    /// inner width `⌊planes · base_width / 64⌋ · groups`.
    init(inputChannels: Int, planes: Int, stride: Int, downsample: Sequential?, groups: Int, baseWidth: Int,
         rng: inout SeededGenerator) {
        let width = (planes * baseWidth / 64) * groups
        conv1 = Conv2d(inputChannels, width, kernelSize: 1, bias: false, rng: &rng)
        bn1 = BatchNorm2d(width)
        conv2 = Conv2d(width, width, kernelSize: 3, stride: stride, padding: 1, groups: groups, bias: false, rng: &rng)
        bn2 = BatchNorm2d(width)
        conv3 = Conv2d(width, planes * Bottleneck.expansion, kernelSize: 1, bias: false, rng: &rng)
        bn3 = BatchNorm2d(planes * Bottleneck.expansion)
        relu = ReLU()
        self.downsample = downsample
        super.init()
        register("conv1", conv1)
        register("bn1", bn1)
        register("conv2", conv2)
        register("bn2", bn2)
        register("conv3", conv3)
        register("bn3", bn3)
        register("relu", relu)
        if let d = downsample { register("downsample", d) }
    }

    public override var typeName: String { "Bottleneck" }

    /// `conv1 bn1 relu`, `conv2 bn2 relu`, `conv3 bn3`.
    var stages: [ResidualStage] {
        [ResidualStage(conv1, "conv1", bn1, "bn1", relu: true), ResidualStage(conv2, "conv2", bn2, "bn2", relu: true),
         ResidualStage(conv3, "conv3", bn3, "bn3", relu: false)]
    }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        try residualForward(stages, relu: relu, downsample: downsample, input, context: context)
    }

    /// Mirrors `forward`.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        try residualBackward(stages, relu: relu, downsample: downsample, dOutput, context: context)
    }
}

/// One `conv → bn (→ relu)` stage of a residual block's main path.
struct ResidualStage {
    let conv: Conv2d, convName: String, bn: BatchNorm2d, bnName: String, relu: Bool
    init(_ conv: Conv2d, _ convName: String, _ bn: BatchNorm2d, _ bnName: String, relu: Bool) {
        self.conv = conv
        self.convName = convName
        self.bn = bn
        self.bnName = bnName
        self.relu = relu
    }
}

extension Module {
    /// `relu(main(x) + shortcut(x))`: the main path's stages, the shortcut (`downsample` or the
    /// identity), the block's shared `relu` fused into the add. In a training pass the flow of
    /// both branches is tracked and the block's own entry says whether its input needs a gradient.
    /// - Throws: `NNError.layer` naming the failing child.
    func residualForward(_ stages: [ResidualStage], relu: ReLU, downsample: Sequential?, _ input: DenseTensor,
                         context: ForwardContext) throws -> DenseTensor {
        let flowIn = context.flowNeedsGradient
        var out = input
        for (i, s) in stages.enumerated() {
            // eval: the last convolution adds the shortcut and applies the tail ReLU as it writes
            if i == stages.count - 1, !s.relu, let y = try runConvolutionBatchNormAddReLU(
                s.conv, named: s.convName, s.bn, named: s.bnName, relu: relu, named: "relu", out,
                residual: { try downsample.map { try run($0, named: "downsample", input, context: context) } ?? input },
                context: context) {
                return y
            }
            out = try runConvolutionBatchNorm(s.conv, named: s.convName, s.bn, named: s.bnName,
                                              relu: s.relu ? (relu, "relu") : nil, out, context: context)
        }
        let flowMain = context.flowNeedsGradient
        context.flowNeedsGradient = flowIn
        let identity = try downsample.map { try run($0, named: "downsample", input, context: context) } ?? input
        context.flowNeedsGradient = context.flowNeedsGradient || flowMain
        let y = try runAddReLU(consume out, identity, relu: relu, named: "relu", context: context)
        saveBranchPoint(inputNeedsGradient: flowIn, context: context)
        return y
    }

    /// Mirrors `residualForward`: the tail ReLU, then the shortcut and the main path; their input
    /// gradients summed.
    /// - Throws: what the children's backwards throw.
    func residualBackward(_ stages: [ResidualStage], relu: ReLU, downsample: Sequential?, _ dOutput: DenseTensor?,
                          context: ForwardContext) throws -> DenseTensor? {
        let inputNeeds = try popBranchPoint(context: context)
        let g = try runBackward(relu, named: "relu", dOutput, context: context)
        let shortcut = try downsample.map { try runBackward($0, named: "downsample", g, context: context) } ?? (inputNeeds ? g : nil)
        var main = g
        for s in stages.reversed() {
            main = try backwardConvolutionBatchNorm(s.conv, named: s.convName, s.bn, named: s.bnName,
                                                    relu: s.relu ? (relu, "relu") : nil, main, context: context)
        }
        return try sumGradients(main, shortcut, context: context)
    }
}
