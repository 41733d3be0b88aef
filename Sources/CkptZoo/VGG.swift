import CkptKernels
import CkptNN

// N images, C channels, H rows, W columns (NCHW).

/// VGG as torchvision builds it: `features` from a configuration list, `avgpool` to 7×7, and a
/// three-layer `classifier`. PyTorch counterpart: `torchvision.models.vgg.VGG`.
public final class VGG: FeaturesPoolClassifier {
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

    /// `torchvision.models.vgg*` for a configuration, with or without batch norm: `avgpool` to 7×7
    /// and `classifier` `Linear(25088, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
    /// Linear(4096, numClasses)`.
    public init(configuration: [Layer], batchNorm: Bool, numClasses: Int, rng: inout SeededGenerator) {
        let features = VGG.makeFeatures(configuration, batchNorm: batchNorm, rng: &rng)
        let classifier = Sequential([
            Linear(512 * 7 * 7, 4096, rng: &rng), ReLU(), Dropout(),
            Linear(4096, 4096, rng: &rng), ReLU(), Dropout(),
            Linear(4096, numClasses, rng: &rng),
        ])
        super.init(features: features, avgpool: AdaptiveAvgPool2d(height: 7, width: 7), classifier: classifier)
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
}
