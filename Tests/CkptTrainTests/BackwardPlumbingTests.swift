import CkptKernels
import CkptNN
import CkptTensor
import CkptZoo
import Foundation
import XCTest
@testable import CkptTrain

// N images, C channels, H rows, W columns (NCHW).

/// Whole-model backward plumbing without torch: the tape is consumed exactly and every trainable
/// parameter (and only those) gets a gradient. Values are checked against torch in
/// `TrainingGoldenTests` (finite differences through max pools in float32 are too noisy to judge
/// a whole model; the kernels have their own double-precision checks).
final class BackwardPlumbingTests: XCTestCase {
    /// `L = Σ r_i y_i` with `r_i = sin(1.3·i + 0.5)`, and `r` itself (`∂L/∂y`).
    static func linearLoss(_ y: DenseTensor) -> (Double, DenseTensor) {
        var r = [Float](repeating: 0, count: y.count)
        var l = 0.0
        for i in 0 ..< y.count {
            r[i] = Float(sin(1.3 * Double(i) + 0.5))
            l += Double(r[i]) * Double(y.values[i])
        }
        return (l, try! DenseTensor(shape: y.shape, values: r))
    }

    /// Gradients by one recording pass; checks the tape ends empty.
    static func gradients(_ model: Module, _ inputs: [DenseTensor], inputNeedsGradient: Bool = false) throws -> [DenseTensor?] {
        for (_, p) in model.namedParameters() { p.zeroGradient() }
        let context = ForwardContext(recording: true, inputNeedsGradient: inputNeedsGradient)
        let y = try model.forward(inputs: inputs, context: context)
        let dx = try model.backward(inputs: linearLoss(y).1, context: context)
        XCTAssertEqual(context.tapeCount, 0, "the backward consumed the whole tape")
        return dx
    }

    func checkModel(_ name: String, numClasses: Int, inputShapes: [[Int]], train: TrainableSelection = .all,
                    probes: [String]) throws {
        let model = try Zoo.make(name, numClasses: numClasses, seed: 1)
        model.setTraining(true)
        let trainable = Set(try train.apply(to: model))
        var rng = SeededGenerator(seed: 7)
        let inputs = inputShapes.map { Initialization.uniform($0, bound: 1, using: &rng) }
        _ = try Self.gradients(model, inputs)
        for (key, p) in model.namedParameters() where p.role == .parameter {
            if trainable.contains(key) {
                XCTAssertNotNil(p.gradient, "\(name): \(key) trains but got no gradient")
            } else {
                XCTAssertNil(p.gradient, "\(name): \(key) is frozen but got a gradient")
            }
        }
        XCTAssertFalse(probes.isEmpty)
        for key in probes { XCTAssertTrue(trainable.contains(key), "\(name): \(key)") }
    }

    func testSmallCNNGradientsMatchFiniteDifferences() throws {
        try checkModel("smallcnn", numClasses: 10, inputShapes: [[2, 3, 32, 32]],
                       probes: ["model.0.weight", "model.0.bias", "model.4.weight", "model.7.weight", "model.8.bias"])
    }

    func testResNet18GradientsMatchFiniteDifferences() throws {
        try checkModel("resnet18", numClasses: 4, inputShapes: [[2, 3, 32, 32]],
                       probes: ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                                "layer4.1.bn2.bias", "fc.weight"])
    }

    func testFrozenPrefixGetsNoGradientAndTrainableLayersDo() throws {
        try checkModel("resnet18", numClasses: 4, inputShapes: [[2, 3, 32, 32]], train: .only(["layer4", "fc"]),
                       probes: ["layer4.0.conv1.weight", "fc.bias"])
    }

    func testSegNetSharedLayersAndSkipsMatchFiniteDifferences() throws {
        try checkModel("segnet", numClasses: 3, inputShapes: [[1, 1, 32, 32], [1, 1, 32, 32]],
                       probes: ["input.0.weight", "enc1.0.weight", "dec5.1.weight", "dec4.decode.4.weight", "dec1.decode.4.bias"])
    }
}
