import CkptKernels
import CkptNN

// N images, C channels, H rows, W columns (NCHW).

/// ResNet, ResNeXt and wide ResNet as torchvision builds them: a 7×7 stem, four stages of
/// residual blocks given by block counts, global average pooling and `fc`.
/// PyTorch counterpart: `torchvision.models.resnet.ResNet`.
public final class ResNet: Module {
    /// Which residual block the stages use.
    public enum Block: Sendable, Hashable {
        /// Two 3×3 convolutions (resnet18/34).
        case basic
        /// 1×1–3×3–1×1 (resnet50+, ResNeXt, wide ResNet).
        case bottleneck

        var expansion: Int { self == .basic ? BasicBlock.expansion : Bottleneck.expansion }
    }

    /// The stage layout: block type, blocks per stage, groups and width per group.
    public struct Configuration: Sendable, Hashable {
        /// Residual block type.
        public var block: Block
        /// Blocks in `layer1` … `layer4`.
        public var layers: [Int]
        /// Groups of the 3×3 convolutions (32 for ResNeXt).
        public var groups: Int
        /// `width_per_group` (64; 4 or 8 for ResNeXt; 128 for wide ResNet-50-2).
        public var widthPerGroup: Int

        /// A configuration; torchvision's defaults are `groups: 1, widthPerGroup: 64`.
        public init(block: Block, layers: [Int], groups: Int = 1, widthPerGroup: Int = 64) {
            self.block = block
            self.layers = layers
            self.groups = groups
            self.widthPerGroup = widthPerGroup
        }
    }

    let conv1: Conv2d, bn1: BatchNorm2d, relu: ReLU, maxpool: MaxPool2d
    let stages: [Sequential]
    let avgpool: AdaptiveAvgPool2d
    let fc: Linear

    /// `ResNet(block, layers, num_classes, groups, width_per_group)` with torchvision's init
    /// (`zero_init_residual=False`).
    public init(_ configuration: Configuration, numClasses: Int, rng: inout SeededGenerator) {
        conv1 = Conv2d(3, 64, kernelSize: 7, stride: 2, padding: 3, bias: false, rng: &rng)
        bn1 = BatchNorm2d(64)
        relu = ReLU()
        maxpool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
        var inplanes = 64
        var stages: [Sequential] = []
        let expansion = configuration.block.expansion
        for (i, count) in configuration.layers.enumerated() {
            let planes = 64 << i
            let stride = i == 0 ? 1 : 2
            var blocks: [Module] = []
            for b in 0 ..< count {
                let s = b == 0 ? stride : 1
                var downsample: Sequential?
                if b == 0 && (s != 1 || inplanes != planes * expansion) {
                    downsample = Sequential([
                        Conv2d(inplanes, planes * expansion, kernelSize: 1, stride: s, bias: false, rng: &rng),
                        BatchNorm2d(planes * expansion),
                    ])
                }
                switch configuration.block {
                case .basic:
                    blocks.append(BasicBlock(inputChannels: inplanes, planes: planes, stride: s, downsample: downsample, rng: &rng))
                case .bottleneck:
                    blocks.append(Bottleneck(inputChannels: inplanes, planes: planes, stride: s, downsample: downsample,
                                             groups: configuration.groups, baseWidth: configuration.widthPerGroup, rng: &rng))
                }
                inplanes = planes * expansion
            }
            stages.append(Sequential(blocks))
        }
        self.stages = stages
        avgpool = AdaptiveAvgPool2d(height: 1, width: 1)
        fc = Linear(512 * expansion, numClasses, rng: &rng)
        super.init()
        register("conv1", conv1)
        register("bn1", bn1)
        register("relu", relu)
        register("maxpool", maxpool)
        for (i, s) in stages.enumerated() { register("layer\(i + 1)", s) }
        register("avgpool", avgpool)
        register("fc", fc)
        TorchvisionInitialization.apply(to: self, linear: .keepDefault, rng: &rng)
    }

    public override var typeName: String { "ResNet" }

    public override var sequentialTail: [(path: String, module: Module)] {
        child(named: "fc").map { [("fc", $0)] } ?? []
    }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        var x = try runConvolutionBatchNorm(conv1, named: "conv1", bn1, named: "bn1", relu: (relu, "relu"), input, context: context)
        x = try run(maxpool, named: "maxpool", x, context: context)
        for (i, s) in stages.enumerated() { x = try run(s, named: "layer\(i + 1)", x, context: context) }
        x = try run(avgpool, named: "avgpool", x, context: context)
        x = try flattenRecording(x, context: context)
        return try run(fc, named: "fc", x, context: context)
    }

    /// Mirrors `forward`.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        var g = try runBackward(fc, named: "fc", dOutput, context: context)
        g = try unflattenGradient(g, context: context)
        g = try runBackward(avgpool, named: "avgpool", g, context: context)
        for i in stages.indices.reversed() { g = try runBackward(stages[i], named: "layer\(i + 1)", g, context: context) }
        g = try runBackward(maxpool, named: "maxpool", g, context: context)
        return try backwardConvolutionBatchNorm(conv1, named: "conv1", bn1, named: "bn1", relu: (relu, "relu"), g, context: context)
    }
}
