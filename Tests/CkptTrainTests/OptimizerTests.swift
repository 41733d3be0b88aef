import CkptFormat
import CkptKernels
import CkptNN
import CkptTensor
import Foundation
import XCTest
@testable import CkptTrain

/// SGD, Adam and AdamW against torch 2.15's own steps (fixtures/train/optimizers.json): two
/// groups with their own learning rates, six steps, a parameter with no gradient at steps 0 and 3.
final class OptimizerTests: XCTestCase {
    /// Every parameter after every step, within 1e-6 of the tensor's largest magnitude (they agree
    /// bit for bit here; SGD must). Adam's tolerance is for torch's `sqrt`, see the large case.
    func testEveryCaseMatchesTorchAtEveryStep() throws {
        let s = try OptimizerFixtures.setup()
        XCTAssertEqual(s.cases.count, 8)
        var report: [String] = []
        for c in s.cases {
            let name = c.name
            let (params, opt) = try OptimizerFixtures.make(s, c)
            let expected = c.expected
            var worst = 0.0, differing = 0, total = 0
            for t in 0 ..< expected.count {
                try OptimizerFixtures.setGradients(s, params, step: t)
                try opt.step()
                for (k, p) in params.enumerated() {
                    let d = OptimizerFixtures.relativeDifference(p.value.values, expected[t][k])
                    XCTAssertLessThanOrEqual(d, 1e-6, "\(name) step \(t) parameter \(k)")
                    worst = max(worst, d)
                    differing += OptimizerFixtures.differingElements(p.value.values, expected[t][k])
                    total += p.value.count
                }
            }
            if name.hasPrefix("sgd") { XCTAssertEqual(differing, 0, "\(name): SGD is bit-exact") }
            report.append("\(name): max \(worst), \(differing)/\(total) floats differ")
        }
        print("optimizer differences against torch: " + report.joined(separator: "; "))
    }

    /// 2112 elements, where torch's `sqrt` (MKL's `vsSqrt`, 1 ulp low on a few inputs) can part
    /// from the correctly rounded one: within 1e-6 relative, and almost every float identical.
    func testLargeParameterMatchesTorchWithinTolerance() throws {
        let large = try OptimizerFixtures.setup().large
        let n = large.shape.reduce(1, *)
        var report: [String] = []
        for (name, expected) in [("adam", large.adam), ("adamw", large.adamw)] {
            let p = Parameter(try DenseTensor(shape: large.shape, values: (0 ..< n).map { Float(0.5 * cos(0.013 * Double($0))) }))
            let opt: any Optimizer = name == "adam"
                ? try Adam(parameters: [("w", p)], learningRate: large.lr)
                : try AdamW(parameters: [("w", p)], learningRate: large.lr, weightDecay: 0.05)
            for t in 0 ..< large.steps {
                try p.setGradient(try DenseTensor(shape: large.shape, values: (0 ..< n).map { Float(0.2 * sin(0.03 * Double($0) + 0.7 * Double(t))) }))
                try opt.step()
            }
            let torch = expected.map { Float($0) }
            let d = OptimizerFixtures.relativeDifference(p.value.values, torch)
            let differing = OptimizerFixtures.differingElements(p.value.values, torch)
            XCTAssertLessThanOrEqual(d, 1e-6, name)
            XCTAssertLessThan(differing, n / 50, name)
            report.append("\(name): max \(d), \(differing)/\(n) floats differ")
        }
        print("large parameter against torch: " + report.joined(separator: "; "))
    }

    /// A parameter without a gradient keeps its value, and its state neither starts nor advances.
    func testParameterWithoutGradientIsSkippedAndItsStateWaits() throws {
        let s = try OptimizerFixtures.setup()
        let params = try OptimizerFixtures.parameters(s)
        let sgd = try SGD(groups: OptimizerFixtures.groups(s, [.init(lr: 0.1, momentum: 0.9), .init(lr: 0.03, momentum: 0.5)], params))
        let paramsAdam = try OptimizerFixtures.parameters(s)
        let adam = try Adam(groups: OptimizerFixtures.groups(s, [.init(lr: 0.01), .init(lr: 0.003)], paramsAdam))
        for t in 0 ..< 4 {
            let before = params[1].value
            let beforeAdam = paramsAdam[1].value
            try OptimizerFixtures.setGradients(s, params, step: t)
            try OptimizerFixtures.setGradients(s, paramsAdam, step: t)
            try sgd.step()
            try adam.step()
            if t == 0 || t == 3 {
                XCTAssertEqual(params[1].value, before, "step \(t)")
                XCTAssertEqual(paramsAdam[1].value, beforeAdam, "step \(t)")
            }
            if t == 0 { XCTAssertNil(sgd.momentumBuffer(of: params[1])) }
        }
        XCTAssertEqual(adam.stepCount(of: paramsAdam[0]), 4)
        XCTAssertEqual(adam.stepCount(of: paramsAdam[1]), 2)
        // torch lists state in creation order: parameter 1 came last
        let state = try XCTUnwrap(try sgd.stateDict().dictValue?["state"]?.dictValue)
        XCTAssertEqual(state.items.map(\.key.pathComponent), ["0", "2", "3", "1"])
    }

    func testZeroGradientsSetsEveryGradientToNone() throws {
        let s = try OptimizerFixtures.setup()
        let params = try OptimizerFixtures.parameters(s)
        let opt = try SGD(parameters: s.keys.indices.map { (s.keys[$0], params[$0]) }, learningRate: 0.1)
        try OptimizerFixtures.setGradients(s, params, step: 1)
        XCTAssertTrue(params.allSatisfy { $0.gradient != nil })
        opt.zeroGradients()
        XCTAssertTrue(params.allSatisfy { $0.gradient == nil })
        let before = params.map(\.value)
        try opt.step()
        XCTAssertEqual(params.map(\.value), before)
    }

    /// Buffers are never trained, and frozen parameters stay out of the groups `trainableParameters` builds.
    func testTrainableParametersSkipFrozenParametersAndBuffers() throws {
        let module = Module()
        let w = module.register("weight", Parameter(DenseTensor(shape: [2], repeating: 1)))
        let frozen = module.register("frozen", Parameter(DenseTensor(shape: [2], repeating: 1)))
        frozen.requiresGrad = false
        let buffer = module.register("running_mean", Parameter(DenseTensor(shape: [2]), role: .buffer))
        let trainable = ParameterGroup.trainableParameters(of: module)
        XCTAssertEqual(trainable.map(\.key), ["weight"])
        XCTAssertTrue(trainable[0].parameter === w)
        XCTAssertThrowsError(try SGD(parameters: [("running_mean", buffer)], learningRate: 0.1)) {
            XCTAssertEqual("\($0)", "sgd group 0: 'running_mean' is a buffer, which no optimizer trains")
        }
    }

    /// A parameter given another shape after its state was made is refused before anything moves.
    func testReplacedParameterShapeIsRefusedAtTheStep() throws {
        let p = Parameter(DenseTensor(shape: [3], repeating: 1))
        for opt in [try SGD(parameters: [("w", p)], learningRate: 0.1, momentum: 0.9) as any Optimizer,
                    try AdamW(parameters: [("w", p)])] {
            p.value = DenseTensor(shape: [3], repeating: 1)
            try p.setGradient(DenseTensor(shape: [3], repeating: 1))
            try opt.step()
            p.value = DenseTensor(shape: [4], repeating: 1)
            try p.setGradient(DenseTensor(shape: [4], repeating: 1))
            let name = opt is SGD ? "sgd" : "adamw"
            XCTAssertThrowsError(try opt.step()) {
                XCTAssertEqual("\($0)", "\(name) group 0: 'w': its state holds 3 values, the parameter has 4 (was the parameter replaced?)")
            }
            XCTAssertEqual(p.value.values, [1, 1, 1, 1])
        }
    }

    func testInvalidHyperParametersAreRefusedWithOneLine() throws {
        let p = [("w", Parameter(DenseTensor(shape: [3], repeating: 1)))]
        func message(_ make: () throws -> Any) -> String {
            do { _ = try make(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(message { try SGD(parameters: p, learningRate: -0.1) }, "sgd group 0: learning rate must be positive and finite, got -0.1")
        XCTAssertEqual(message { try SGD(parameters: p, learningRate: 0) }, "sgd group 0: learning rate must be positive and finite, got 0.0")
        XCTAssertEqual(message { try Adam(parameters: p, learningRate: .nan) }, "adam group 0: learning rate must be positive and finite, got nan")
        XCTAssertEqual(message { try SGD(parameters: p, learningRate: 0.1, momentum: -0.9) },
                       "sgd group 0: momentum must be zero or positive and finite, got -0.9")
        XCTAssertEqual(message { try SGD(parameters: p, learningRate: 0.1, weightDecay: -1e-4) },
                       "sgd group 0: weight decay must be zero or positive and finite, got -0.0001")
        XCTAssertEqual(message { try SGD(parameters: p, learningRate: 0.1, nesterov: true) },
                       "sgd group 0: nesterov momentum needs a positive momentum and zero dampening, got momentum 0.0, dampening 0.0")
        XCTAssertEqual(message { try SGD(parameters: p, learningRate: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true) },
                       "sgd group 0: nesterov momentum needs a positive momentum and zero dampening, got momentum 0.9, dampening 0.1")
        XCTAssertEqual(message { try Adam(parameters: p, betas: (1.0, 0.999)) }, "adam group 0: betas[0] must be in [0, 1), got 1.0")
        XCTAssertEqual(message { try AdamW(parameters: p, betas: (0.9, -0.1)) }, "adamw group 0: betas[1] must be in [0, 1), got -0.1")
        XCTAssertEqual(message { try AdamW(parameters: p, eps: -1e-8) }, "adamw group 0: eps must be zero or positive and finite, got -1e-08")
        XCTAssertEqual(message { try AdamW(parameters: p, weightDecay: -0.01) },
                       "adamw group 0: weight decay must be zero or positive and finite, got -0.01")
        let second = ParameterGroup(parameters: p, learningRate: 0.1)
        XCTAssertEqual(message { try SGD(groups: [ParameterGroup(parameters: p, learningRate: 0.1), second]) },
                       "sgd group 1: 'w' is already in group 0 as 'w'; a parameter may be in one group only")
        XCTAssertEqual(message { try AdamW(parameters: []) }, "adamw: got no parameters to optimize (every parameter frozen, or no group given)")
        // the second group names its own values
        let q = [("v", Parameter(DenseTensor(shape: [3], repeating: 1)))]
        XCTAssertEqual(message { try SGD(groups: [second, ParameterGroup(parameters: q, learningRate: -2)]) },
                       "sgd group 1: learning rate must be positive and finite, got -2.0")

        // a schedule may anneal to 0, which a step accepts; a negative rate set later is refused there
        let sgd = try SGD(parameters: p, learningRate: 0.1)
        try p[0].1.setGradient(DenseTensor(shape: [3], repeating: 1))
        sgd.groups[0].learningRate = 0
        try sgd.step()
        XCTAssertEqual(p[0].1.value.values, [1, 1, 1])
        sgd.groups[0].learningRate = -1
        XCTAssertEqual(message { try sgd.step() }, "sgd group 0: learning rate must be zero or positive and finite, got -1.0")
    }
}
