import CkptKernels
import CkptNN

// N images, C channels, H rows, W columns (NCHW).

/// The shape torchvision's AlexNet and VGG share: a convolutional `features` trunk, an adaptive
/// average pool, a flatten, and a `Sequential` `classifier` whose last `Linear` is the head.
public class FeaturesPoolClassifier: Module {
    /// The convolutional trunk.
    public let features: Sequential
    /// `AdaptiveAvgPool2d` to the classifier's input size.
    public let avgpool: AdaptiveAvgPool2d
    /// The fully connected layers (`classifier.6` is the head in both networks).
    public let classifier: Sequential

    init(features: Sequential, avgpool: AdaptiveAvgPool2d, classifier: Sequential) {
        self.features = features
        self.avgpool = avgpool
        self.classifier = classifier
        super.init()
        register("features", features)
        register("avgpool", avgpool)
        register("classifier", classifier)
    }

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
