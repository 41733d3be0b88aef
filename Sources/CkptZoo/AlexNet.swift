import CkptKernels
import CkptNN

// N images, C channels, H rows, W columns (NCHW).

/// AlexNet as torchvision builds it (the one-GPU variant of "One weird trick").
/// PyTorch counterpart: `torchvision.models.alexnet.AlexNet`, default initialisation.
public final class AlexNet: FeaturesPoolClassifier {
    /// `torchvision.models.alexnet(num_classes=numClasses)`: `features` (five convolutions with
    /// ReLU and three max pools), `avgpool` to 6×6, and `classifier` (`Dropout, Linear(9216, 4096),
    /// ReLU, Dropout, Linear(4096, 4096), ReLU, Linear(4096, numClasses)`).
    public init(numClasses: Int, rng: inout SeededGenerator) {
        let features = Sequential([
            Conv2d(3, 64, kernelSize: 11, stride: 4, padding: 2, rng: &rng), ReLU(), MaxPool2d(kernelSize: 3, stride: 2),
            Conv2d(64, 192, kernelSize: 5, padding: 2, rng: &rng), ReLU(), MaxPool2d(kernelSize: 3, stride: 2),
            Conv2d(192, 384, kernelSize: 3, padding: 1, rng: &rng), ReLU(),
            Conv2d(384, 256, kernelSize: 3, padding: 1, rng: &rng), ReLU(),
            Conv2d(256, 256, kernelSize: 3, padding: 1, rng: &rng), ReLU(), MaxPool2d(kernelSize: 3, stride: 2),
        ])
        let classifier = Sequential([
            Dropout(), Linear(256 * 6 * 6, 4096, rng: &rng), ReLU(),
            Dropout(), Linear(4096, 4096, rng: &rng), ReLU(),
            Linear(4096, numClasses, rng: &rng),
        ])
        super.init(features: features, avgpool: AdaptiveAvgPool2d(height: 6, width: 6), classifier: classifier)
    }

    public override var typeName: String { "AlexNet" }
}

/// The small CIFAR-10 network of the seed tutorials: three 5×5 convolutions with max pools,
/// then two linears, all in one `Sequential` named `model`.
public final class SmallCNN: Module {
    /// `Conv(3,32,5,p2) MaxPool Conv(32,32,5,p2) MaxPool Conv(32,64,5,p2) MaxPool Flatten Linear(1024,64) Linear(64,n)`.
    public let model: Sequential

    /// The network for 32×32 inputs with `numClasses` outputs, PyTorch default initialisation.
    public init(numClasses: Int, rng: inout SeededGenerator) {
        model = Sequential([
            Conv2d(3, 32, kernelSize: 5, padding: 2, rng: &rng), MaxPool2d(kernelSize: 2),
            Conv2d(32, 32, kernelSize: 5, padding: 2, rng: &rng), MaxPool2d(kernelSize: 2),
            Conv2d(32, 64, kernelSize: 5, padding: 2, rng: &rng), MaxPool2d(kernelSize: 2),
            Flatten(), Linear(1024, 64, rng: &rng), Linear(64, numClasses, rng: &rng),
        ])
        super.init()
        register("model", model)
    }

    public override var typeName: String { "SmallCNN" }

    public override var sequentialTail: [(path: String, module: Module)] {
        (child(named: "model")?.children ?? []).map { ("model." + $0.name, $0.module) }
    }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        try run(model, named: "model", input, context: context)
    }

    /// Mirrors `forward`.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        try runBackward(model, named: "model", dOutput, context: context)
    }
}
