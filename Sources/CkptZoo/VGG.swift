import CkptKernels
import CkptNN

// N images, C channels, H rows, W columns (NCHW).

/// VGG as torchvision builds it: `features` from a configuration list, `avgpool` to 7×7, and a
/// three-layer `classifier`. PyTorch counterpart: `torchvision.models.vgg.VGG`.
public final class VGG: Module {
    /// One entry of a configuration: a 3×3 convolution to this many channels, or a 2×2 max pool.
    public enum Layer: Sendable, Hashable {
        /// `Conv2d(in, channels, 3, padding=1)` (+ `BatchNorm2d`) + `ReLU`.
        case convolution(Int)
        /// `MaxPool2d(2, 2)`.
        case maxPool
    }

    /// torchvision's `cfgs`: A = vgg11, B = vgg13, D = vgg16, E = vgg19.
    public static let configurations: [String: [Layer]] = {
        func cfg(_ items: [Int]) -> [Layer] { items.map { $0 == 0 ? .maxPool : .convolution($0) } }
        return [
            "A": cfg([64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]),
            "B": cfg([64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]),
            "D": cfg([64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]),
            "E": cfg([64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0]),
        ]
    }()

    /// The convolutional trunk.
    public let features: Sequential
    /// `AdaptiveAvgPool2d((7, 7))`.
    public let avgpool: AdaptiveAvgPool2d
    /// `Linear(25088, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, numClasses)`.
    public let classifier: Sequential

    /// `torchvision.models.vgg*` for a configuration, with or without batch norm.
    public init(configuration: [Layer], batchNorm: Bool, numClasses: Int, rng: inout SeededGenerator) {
        features = VGG.makeFeatures(configuration, batchNorm: batchNorm, rng: &rng)
        avgpool = AdaptiveAvgPool2d(height: 7, width: 7)
        classifier = Sequential([
            Linear(512 * 7 * 7, 4096, rng: &rng), ReLU(), Dropout(),
            Linear(4096, 4096, rng: &rng), ReLU(), Dropout(),
            Linear(4096, numClasses, rng: &rng),
        ])
        super.init()
        register("features", features)
        register("avgpool", avgpool)
        register("classifier", classifier)
        TorchvisionInitialization.apply(to: self, linear: .normal(std: 0.01), rng: &rng)
    }

    /// `make_layers(cfg, batch_norm)`: every layer takes a `Sequential` slot, so ReLU and pooling
    /// leave gaps in the parameter keys.
    public static func makeFeatures(_ configuration: [Layer], batchNorm: Bool, inputChannels: Int = 3,
                                    rng: inout SeededGenerator) -> Sequential {
        var layers: [Module] = []
        var channels = inputChannels
        for item in configuration {
            switch item {
            case .maxPool:
                layers.append(MaxPool2d(kernelSize: 2, stride: 2))
            case let .convolution(out):
                layers.append(Conv2d(channels, out, kernelSize: 3, padding: 1, rng: &rng))
                if batchNorm { layers.append(BatchNorm2d(out)) }
                layers.append(ReLU())
                channels = out
            }
        }
        return Sequential(layers)
    }

    public override var typeName: String { "VGG" }

    public override var sequentialTail: [(path: String, module: Module)] {
        (child(named: "classifier")?.children ?? []).map { ("classifier." + $0.name, $0.module) }
    }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        var x = try run(features, named: "features", input, context: context)
        x = try run(avgpool, named: "avgpool", x, context: context)
        x = try flattenRecording(x, context: context)
        return try run(classifier, named: "classifier", x, context: context)
    }

    /// Mirrors `forward`.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        var g = try runBackward(classifier, named: "classifier", dOutput, context: context)
        g = try unflattenGradient(g, context: context)
        g = try runBackward(avgpool, named: "avgpool", g, context: context)
        return try runBackward(features, named: "features", g, context: context)
    }
}
