import CkptKernels
import CkptNN
import CkptTensor

/// Errors raised by the zoo.
public enum ZooError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No architecture has this name; `available` lists the zoo.
    case unknownModel(name: String, available: [String])
    /// `num_classes` must be positive.
    case invalidClassCount(Int)

    /// One lower-case line.
    public var description: String {
        switch self {
        case let .unknownModel(name, available):
            let hint = Zoo.closestName(to: name, in: available).map { " did you mean '\($0)'?" } ?? ""
            return "unknown model '\(name)';\(hint) the zoo has: \(available.joined(separator: ", "))"
        case let .invalidClassCount(n):
            return "num_classes must be positive, got \(n)"
        }
    }
}

/// The model zoo: every architecture ckpt can build, by torchvision's name.
///
/// Counterpart: `torchvision.models.get_model(name, num_classes=…)`.
public enum Zoo {
    /// One architecture of the zoo.
    public struct Entry: Sendable {
        /// Registry name (`resnet50`).
        public var name: String
        /// `num_classes` when the caller gives none.
        public var defaultClassCount: Int
        /// Input shapes without the batch dimension, one per forward argument, for summaries and benches.
        public var defaultInputShapes: [[Int]]
        /// Family, for listings (`vgg`, `resnet`, …).
        public var family: String
        /// How the constructor initialises weights (for re-initialising single modules).
        var initialization: InitializationStyle
        /// How the model is built from another zoo model's parts, as transplant rules
        /// (`features.3:7=enc1`), and the model they take from; nil when it is not.
        public var recipe: Recipe?
        let build: @Sendable (Int, Bool, inout SeededGenerator) -> Module

        init(name: String, defaultClassCount: Int, defaultInputShapes: [[Int]], family: String,
             initialization: InitializationStyle, recipe: Recipe? = nil,
             build: @escaping @Sendable (Int, Bool, inout SeededGenerator) -> Module) {
            self.name = name
            self.defaultClassCount = defaultClassCount
            self.defaultInputShapes = defaultInputShapes
            self.family = family
            self.initialization = initialization
            self.recipe = recipe
            self.build = build
        }
    }

    /// A model built from another's parts: `segnet`'s encoder is vgg19_bn's `features[3:7]` … `[40:]`.
    public struct Recipe: Sendable {
        /// The zoo model the parts come from.
        public var source: String
        /// `--map` values (`features.3:7=enc1`), in order.
        public var maps: [String]
    }

    /// How a model's constructor initialises its weights.
    enum InitializationStyle: Sendable {
        /// torchvision's loop: convolutions kaiming-normal (fan_out) with zero bias, batch norm
        /// 1 and 0, linears per the rule (VGG, ResNet, SegNet).
        case torchvision(linear: TorchvisionInitialization.LinearRule)
        /// PyTorch's layer defaults only (AlexNet, the seed's small CNN).
        case pytorchDefault
    }

    private static func vgg(_ name: String, _ cfg: String, bn: Bool) -> Entry {
        Entry(name: name, defaultClassCount: 1000, defaultInputShapes: [[3, 224, 224]], family: "vgg",
              initialization: .torchvision(linear: .normal(std: 0.01))) { n, _, rng in
            VGG(configuration: VGG.configurations[cfg] ?? [], batchNorm: bn, numClasses: n, rng: &rng)
        }
    }

    private static func resnet(_ name: String, _ c: ResNet.Configuration) -> Entry {
        Entry(name: name, defaultClassCount: 1000, defaultInputShapes: [[3, 224, 224]],
              family: c.groups > 1 ? "resnext" : (c.widthPerGroup > 64 ? "wide_resnet" : "resnet"),
              initialization: .torchvision(linear: .keepDefault)) { n, _, rng in
            ResNet(c, numClasses: n, rng: &rng)
        }
    }

    /// Every architecture in listing order.
    public static let entries: [Entry] = [
        vgg("vgg11", "A", bn: false), vgg("vgg13", "B", bn: false), vgg("vgg16", "D", bn: false), vgg("vgg19", "E", bn: false),
        vgg("vgg11_bn", "A", bn: true), vgg("vgg13_bn", "B", bn: true), vgg("vgg16_bn", "D", bn: true), vgg("vgg19_bn", "E", bn: true),
        resnet("resnet18", .init(block: .basic, layers: [2, 2, 2, 2])),
        resnet("resnet34", .init(block: .basic, layers: [3, 4, 6, 3])),
        resnet("resnet50", .init(block: .bottleneck, layers: [3, 4, 6, 3])),
        resnet("resnet101", .init(block: .bottleneck, layers: [3, 4, 23, 3])),
        resnet("resnet152", .init(block: .bottleneck, layers: [3, 8, 36, 3])),
        resnet("resnext50_32x4d", .init(block: .bottleneck, layers: [3, 4, 6, 3], groups: 32, widthPerGroup: 4)),
        resnet("resnext101_32x8d", .init(block: .bottleneck, layers: [3, 4, 23, 3], groups: 32, widthPerGroup: 8)),
        resnet("wide_resnet50_2", .init(block: .bottleneck, layers: [3, 4, 6, 3], widthPerGroup: 128)),
        Entry(name: "alexnet", defaultClassCount: 1000, defaultInputShapes: [[3, 224, 224]], family: "alexnet",
              initialization: .pytorchDefault) { n, _, rng in
            AlexNet(numClasses: n, rng: &rng)
        },
        Entry(name: "smallcnn", defaultClassCount: 10, defaultInputShapes: [[3, 32, 32]], family: "smallcnn",
              initialization: .pytorchDefault) { n, _, rng in
            SmallCNN(numClasses: n, rng: &rng)
        },
        Entry(name: "segnet", defaultClassCount: 2, defaultInputShapes: [[1, 160, 160], [1, 160, 160]], family: "segnet",
              initialization: .torchvision(linear: .keepDefault),
              recipe: Recipe(source: "vgg19_bn", maps: ["features.3:7=enc1", "features.7:14=enc2", "features.14:27=enc3",
                                                         "features.27:40=enc4", "features.40:=enc5"])) { n, shared, rng in
            SegNet(numClasses: n, sharesRepeatedLayers: shared, rng: &rng)
        },
    ]

    /// The name in `names` closest to `name` by edit distance, when it is close (a typo), else nil.
    public static func closestName(to name: String, in names: [String]) -> String? {
        let a = Array(name.lowercased())
        func distance(_ other: String) -> Int {
            let b = Array(other.lowercased())
            var row = Array(0 ... b.count)
            for i in 1 ... max(a.count, 1) where !a.isEmpty {
                var previous = row[0]
                row[0] = i
                for j in 1 ... max(b.count, 1) where !b.isEmpty {
                    let current = row[j]
                    row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                    previous = current
                }
            }
            return row[b.count]
        }
        guard let best = names.min(by: { distance($0) < distance($1) }) else { return nil }
        return distance(best) <= max(1, min(3, a.count / 3)) ? best : nil
    }

    /// Registry names in listing order.
    public static var names: [String] { entries.map(\.name) }

    /// The entry named `name`.
    /// - Throws: `ZooError.unknownModel` listing the zoo.
    public static func entry(named name: String) throws -> Entry {
        // model names match case-insensitively (ResNet34, VGG19_BN)
        guard let e = entries.first(where: { $0.name == name }) ?? entries.first(where: { $0.name.lowercased() == name.lowercased() }) else {
            throw ZooError.unknownModel(name: name, available: names)
        }
        return e
    }

    /// Builds `name` with `numClasses` outputs (the entry's default when nil), initialised as
    /// torchvision initialises it from a generator seeded with `seed`, in eval mode. With
    /// `initialize: false` every weight is zero (fast: for key lists, summaries, or a load that
    /// sets every value).
    /// Modules the original network lists several times (SegNet's repeated triples) stay one
    /// shared module unless `untieSharedLayers` is true.
    /// - Throws: `ZooError.unknownModel`, `ZooError.invalidClassCount`.
    public static func make(_ name: String, numClasses: Int? = nil, seed: UInt64 = 0, initialize: Bool = true,
                            untieSharedLayers: Bool = false) throws -> Module {
        let e = try entry(named: name)
        let n = numClasses ?? e.defaultClassCount
        guard n >= 1 else { throw ZooError.invalidClassCount(n) }
        var rng = initialize ? SeededGenerator(seed: seed) : .shapeOnly
        let model = e.build(n, !untieSharedLayers, &rng)
        model.setTraining(false)
        return model
    }
}

/// What a zoo model holds, without its weights: `Zoo.specification`.
public struct ModelSpecification: Sendable {
    /// Every state-dict entry in order (`model.state_dict()` keys, shapes, dtypes).
    public var parameterSpecs: [ParameterSpec]
    /// Elements of distinct parameters (`sum(p.numel() for p in model.parameters())`).
    public var parameterCount: Int
    /// Groups of keys naming one shared tensor (SegNet's repeated triples).
    public var sharedKeyGroups: [[String]]
}

extension Zoo {
    /// The keys, shapes and sharing of `name` without allocating its weights (instant even for
    /// VGG's 140 M parameters).
    /// - Throws: as `make`.
    public static func specification(_ name: String, numClasses: Int? = nil) throws -> ModelSpecification {
        let model = try makeUnallocated(name, numClasses: numClasses)
        return ModelSpecification(parameterSpecs: model.parameterSpecs(), parameterCount: model.parameterCount,
                                  sharedKeyGroups: model.sharedKeyGroups())
    }

}

extension Zoo.Entry {
    /// Input shapes for a batch of `batch`, with the spatial size replaced by `size × size` when given
    /// (`ckpt bench --batch B --size S`).
    public func inputShapes(batch: Int, size: Int? = nil) -> [[Int]] {
        defaultInputShapes.map { s in
            var shape = [batch] + s
            if let size, shape.count == 4 { shape[2] = size; shape[3] = size }
            return shape
        }
    }
}

extension Zoo.Entry {
    /// Uniform random inputs in `[-1, 1)` for `inputShapes(batch:size:)`, fixed by `seed` (for benches).
    public func randomInputs(batch: Int, size: Int? = nil, seed: UInt64 = 0) -> [DenseTensor] {
        var rng = SeededGenerator(seed: seed)
        return inputShapes(batch: batch, size: size).map { Initialization.uniform($0, bound: 1, using: &rng) }
    }
}
