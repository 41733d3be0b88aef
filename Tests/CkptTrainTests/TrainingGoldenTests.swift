import CkptKernels
import CkptNN
import CkptTensor
import CkptZoo
import Foundation
import XCTest
@testable import CkptTrain

// N images, C channels, H rows, W columns (NCHW).

/// One training step against torch (fixtures/train/models.json): the loss, the output, every
/// trainable parameter's gradient and every batch-norm buffer after the step, each within 1e-4 of
/// the tensor's largest magnitude; frozen prefixes get no gradient and keep their statistics.
final class TrainingGoldenTests: XCTestCase {
    /// The case's model with formula weights, its selection applied, in training mode.
    static func prepare(_ golden: [String: Any]) throws -> (Module, [DenseTensor], [Int]) {
        let name = try XCTUnwrap(golden["model"] as? String)
        let classes = try XCTUnwrap(golden["num_classes"] as? Int)
        let model = try Zoo.make(name, numClasses: classes, seed: 0, initialize: false)
        let hash = TrainingGoldens.hash(of: golden)
        _ = try model.load(stateDict: try TrainingGoldens.formulaStateDict(model.parameterSpecs(), hash: hash))
        let trainable = try XCTUnwrap(golden["trainable"] as? [String])
        let allKeys = model.namedParameters().filter { $0.parameter.role == .parameter }.map(\.key)
        try (Set(trainable) == Set(allKeys) ? TrainableSelection.all : .only(trainable)).apply(to: model)
        model.setTraining(true)
        if golden["frozen_batchnorm_train"] as? Bool == true {
            for (_, m) in model.namedModules() { (m as? BatchNorm2d)?.batchStatisticsWhenFrozen = true }
        }
        let shapes = try XCTUnwrap(golden["input_shapes"] as? [[Int]])
        let inputs = try shapes.enumerated().map { try TrainingGoldens.input($1, argument: $0, hash: hash) }
        let count = shapes[0].count == 4 && name == "segnet" ? shapes[0][0] * shapes[0][2] * shapes[0][3] : shapes[0][0]
        return (model, inputs, TrainingGoldens.targets(count: count, classes: classes))
    }

    func checkOneStep(_ caseName: String, inputGradients: Bool = false) throws {
        let golden = try TrainingGoldens.modelCase(caseName)
        // torch's float32 output must itself be determined (its float64 twin within 1e-3) to compare with
        let drift = (golden["output"] as? [String: Any])?["rel_f64"] as? Double ?? 0
        if drift > 1e-3 { throw XCTSkip("\(caseName): torch's float32 output is itself off its float64 twin by \(drift)") }
        let (model, inputs, targets) = try Self.prepare(golden)
        // segnet with batch statistics: some ReLU inputs sit within float32 rounding of 0 in exact
        // arithmetic (dec3.decode.5, channel 9: 3.3e-6 in torch's float64 twin; about 1.2 million
        // ReLU inputs per pass make such kinks likely at any size). Which side rounding puts one
        // on is a coin toss between float32 engines, and a flipped one moves its channel's
        // batch-norm gradients by up to 0.12 of the tensor's largest and every gradient before it
        // by up to 3e-3 (measured: one flip gave 1.6e-2 with every other channel within 1e-8; a
        // kernel change that reorders sums flipped others). So segnet's gradients are held only
        // to 0.2 (a missed or doubled use of a shared layer, or a wrong batch-norm backward, is
        // off by O(1)); its loss, output and statistics to 1e-4, and the sharing itself exactly
        // in SharedModuleGradientTests. Elsewhere the bound is 1e-4.
        let gradientBound = caseName == "segnet" ? 0.2 : 1e-4
        let frozenBefore = model.namedParameters().filter { !$0.parameter.requiresGrad }.map { ($0.key, $0.parameter.value) }
        let context = ForwardContext(recording: true, inputNeedsGradient: inputGradients)
        context.dropoutMask = TrainingGoldens.dropoutMask(step: 0)
        let y = try model.forward(inputs: inputs, context: context)
        let (loss, dy) = try CrossEntropy().forwardBackward(y, targets: targets)
        let dx = try model.backward(inputs: dy, context: context)
        XCTAssertEqual(context.tapeCount, 0)
        XCTAssertEqual(Double(loss.values[0]), try XCTUnwrap(golden["loss"] as? Double), accuracy: 1e-4 * max(1, abs(Double(loss.values[0]))),
                       "\(caseName): loss")
        try TrainingGoldens.Summary(golden["output"]).check(y, "\(caseName): output")
        let params = Dictionary(model.namedParameters().map { ($0.key, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        let gradients = try XCTUnwrap(golden["gradients"] as? [String: Any])
        // a conv bias feeding a batch norm with batch statistics has an exact gradient of 0: both
        // engines' values are rounding noise, held to an absolute bound against the largest gradient
        let zeroKeys = Set((golden["zero_gradient_keys"] as? [String]) ?? [])
        let largest = try gradients.values.map { try TrainingGoldens.Summary($0).absMax }.max() ?? 0
        var worst = (0.0, "")
        for (key, summary) in gradients {
            let p = try XCTUnwrap(params[key], key)
            let g = try XCTUnwrap(p.gradient, "\(caseName): \(key) has no gradient")
            if zeroKeys.contains(key) {
                XCTAssertLessThanOrEqual(Double(g.maxMagnitude), 1e-4 * largest, "\(caseName): \(key)'s exact gradient is 0")
                continue
            }
            let e = try TrainingGoldens.Summary(summary).check(g, rtol: gradientBound, "\(caseName): gradient of \(key)")
            if e > worst.0 { worst = (e, key) }
        }
        XCTAssertEqual(gradients.count, params.values.filter(\.requiresGrad).count == 0 ? 0 : gradients.count)
        for (key, p) in params where p.role == .parameter && gradients[key] == nil {
            XCTAssertNil(p.gradient, "\(caseName): \(key) is frozen but got a gradient")
        }
        let buffers = try XCTUnwrap(golden["buffers"] as? [String: Any])
        for (key, summary) in buffers {
            try TrainingGoldens.Summary(summary).check(try XCTUnwrap(params[key], key).value, "\(caseName): buffer \(key)")
        }
        for (key, before) in frozenBefore where params[key]?.role == .parameter {
            XCTAssertEqual(params[key]?.value, before, "\(caseName): frozen \(key) changed")
        }
        if inputGradients {
            let expected = try XCTUnwrap(golden["input_gradients"] as? [Any])
            XCTAssertEqual(dx.count, expected.count)
            for (i, e) in expected.enumerated() {
                try TrainingGoldens.Summary(e).check(try XCTUnwrap(dx[i]), rtol: gradientBound, "\(caseName): input gradient \(i)")
            }
        }
        print("\(caseName): worst gradient difference \(worst.0) of max |g| (\(worst.1))")
    }

    func testSmallCNNStepEqualsTorch() throws { try checkOneStep("smallcnn") }
    func testResNet18StepEqualsTorch() throws { try checkOneStep("resnet18", inputGradients: true) }
    func testVGG11BNStepWithDropoutEqualsTorch() throws { try checkOneStep("vgg11_bn") }
    func testSegNetStepWithSharedLayersEqualsTorch() throws { try checkOneStep("segnet", inputGradients: true) }
    func testResNet18HeadOnlyStepEqualsTorch() throws { try checkOneStep("resnet18_head") }
    func testResNet18Layer4StepEqualsTorch() throws { try checkOneStep("resnet18_layer4") }
    /// Every convolution of segnet trains with its batch norms frozen (eval mode): the shared
    /// triples sum the gradients of their four uses; well conditioned where batch statistics are not.
    func testSegNetFrozenBatchNormStepEqualsTorch() throws { try checkOneStep("segnet_frozen_bn", inputGradients: true) }
    /// torch's `model.train()` with `requires_grad=False` outside `fc` (`--frozen-bn train`).
    func testResNet18HeadWithFrozenBatchStatisticsEqualsTorch() throws { try checkOneStep("resnet18_head_bn_train") }
}

/// Three optimizer steps against torch: the losses and every state-dict entry afterwards.
final class OptimizerStepGoldenTests: XCTestCase {
    func checkSteps(_ caseName: String, optimizer name: String) throws {
        let golden = try TrainingGoldens.modelCase(caseName)
        let run = try XCTUnwrap(golden[name] as? [String: Any])
        let (model, inputs, targets) = try TrainingGoldenTests.prepare(golden)
        let params = ParameterGroup.trainableParameters(of: model)
        let optimizer: any Optimizer
        if name == "sgd" {
            optimizer = try SGD(parameters: params, learningRate: try XCTUnwrap(run["lr"] as? Double),
                                momentum: try XCTUnwrap(run["momentum"] as? Double), dampening: try XCTUnwrap(run["dampening"] as? Double),
                                weightDecay: try XCTUnwrap(run["weight_decay"] as? Double), nesterov: try XCTUnwrap(run["nesterov"] as? Bool))
        } else {
            let betas = try XCTUnwrap(run["betas"] as? [Double])
            optimizer = try AdamW(parameters: params, learningRate: try XCTUnwrap(run["lr"] as? Double), betas: (betas[0], betas[1]),
                                  eps: try XCTUnwrap(run["eps"] as? Double), weightDecay: try XCTUnwrap(run["weight_decay"] as? Double))
        }
        // Three steps of a batch-norm network at batch 4 amplify float32 rounding (large relative
        // updates, batch statistics over few values): torch's own float32 run drifts from its
        // float64 twin by `rel_f64`. Two float32 engines with different summation orders drift
        // apart by more than either drifts from exact, so the bound is 50× torch's own drift
        // (1e-4 where that is smaller); where torch's float32 result is not determined to 1 %,
        // there is nothing to compare against.
        let zeroKeys = Set((golden["zero_gradient_keys"] as? [String]) ?? [])
        let stateEntries = try XCTUnwrap(run["state_dict"] as? [String: Any])
        let drift = stateEntries.filter { !(name == "adamw" && zeroKeys.contains($0.key)) }
            .compactMap { ($0.value as? [String: Any])?["rel_f64"] as? Double }.max() ?? 0
        if drift > 1e-2 {
            throw XCTSkip("\(caseName) \(name): torch's float32 state is itself off its float64 twin by \(drift)")
        }
        // segnet with batch statistics: the ReLU kinks above reach the weights through the
        // steps (a flipped element moves running statistics by up to 2.3e-2 of their largest)
        let rtol = max(1e-4, 50 * drift, caseName == "segnet" ? 5e-2 : 0)
        let trainer = Trainer(model: model, optimizer: optimizer)
        trainer.dropoutMask = { TrainingGoldens.dropoutMask(step: $0) }
        let frozen = model.namedParameters().filter { $0.parameter.role == .parameter && !$0.parameter.requiresGrad }
            .map { ($0.key, $0.parameter.value) }
        let losses = try XCTUnwrap(run["losses"] as? [Double])
        for (t, expected) in losses.enumerated() {
            let outcome = try trainer.step(inputs: inputs, targets: targets)
            XCTAssertEqual(Double(outcome.loss), expected, accuracy: rtol * max(1, abs(expected)), "\(caseName) \(name): loss of step \(t)")
        }
        let state = stateEntries
        let entries = Dictionary(model.namedParameters().map { ($0.key, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        let skipped = zeroKeys
        var worst = (0.0, "")
        for (key, summary) in state {
            let p = try XCTUnwrap(entries[key], key)
            // a bias feeding a trainable batch norm has a zero gradient: AdamW moves it by rounding noise
            if name == "adamw" && skipped.contains(key) { continue }
            let e = try TrainingGoldens.Summary(summary).check(p.value, rtol: rtol, "\(caseName) \(name): \(key) after \(losses.count) steps")
            if e > worst.0 { worst = (e, key) }
        }
        for (key, before) in frozen {
            XCTAssertEqual(entries[key]?.value, before, "\(caseName) \(name): frozen \(key) changed")
        }
        print("\(caseName) \(name): worst state difference \(worst.0) of max |x| (\(worst.1)), bound \(rtol)")
    }

    func testSmallCNNSGD() throws { try checkSteps("smallcnn", optimizer: "sgd") }
    func testSmallCNNAdamW() throws { try checkSteps("smallcnn", optimizer: "adamw") }
    func testResNet18SGD() throws { try checkSteps("resnet18", optimizer: "sgd") }
    func testResNet18AdamW() throws { try checkSteps("resnet18", optimizer: "adamw") }
    func testVGG11BNSGD() throws { try checkSteps("vgg11_bn", optimizer: "sgd") }
    func testVGG11BNAdamW() throws { try checkSteps("vgg11_bn", optimizer: "adamw") }
    func testSegNetSGD() throws { try checkSteps("segnet", optimizer: "sgd") }
    func testSegNetAdamW() throws { try checkSteps("segnet", optimizer: "adamw") }
    func testResNet18HeadSGD() throws { try checkSteps("resnet18_head", optimizer: "sgd") }
    func testResNet18HeadAdamW() throws { try checkSteps("resnet18_head", optimizer: "adamw") }
    func testResNet18Layer4SGD() throws { try checkSteps("resnet18_layer4", optimizer: "sgd") }
    func testResNet18Layer4AdamW() throws { try checkSteps("resnet18_layer4", optimizer: "adamw") }
    func testSegNetFrozenBatchNormSGD() throws { try checkSteps("segnet_frozen_bn", optimizer: "sgd") }
    func testSegNetFrozenBatchNormAdamW() throws { try checkSteps("segnet_frozen_bn", optimizer: "adamw") }
    func testResNet18HeadFrozenBatchStatisticsSGD() throws { try checkSteps("resnet18_head_bn_train", optimizer: "sgd") }
    func testResNet18HeadFrozenBatchStatisticsAdamW() throws { try checkSteps("resnet18_head_bn_train", optimizer: "adamw") }
}
