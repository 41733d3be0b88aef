import CkptFormat
import CkptKernels
import CkptNN
import CkptTensor
import Foundation
import XCTest
@testable import CkptTrain

/// Optimizer state dicts in torch's layout: ckpt's equal torch's, torch's load into ckpt and
/// continue as torch continues, and ckpt's survive a .pth round trip.
final class OptimizerStateTests: XCTestCase {
    private func run(_ name: String, steps: Int) throws -> (OptimizerFixtures.Setup, OptimizerFixtures.Case, [Parameter], any Optimizer) {
        let s = try OptimizerFixtures.setup()
        let c = try s.named(name)
        let (params, opt) = try OptimizerFixtures.make(s, c)
        for t in 0 ..< steps {
            try OptimizerFixtures.setGradients(s, params, step: t)
            try opt.step()
        }
        return (s, c, params, opt)
    }

    /// Keys in torch's order, every hyper-parameter, `step` as a 0-dim float32 tensor, state in
    /// creation order (parameter 1, without a gradient at step 0, comes last).
    func testStateDictEqualsTorchsAfterThreeSteps() throws {
        for name in ["sgd_momentum", "adamw"] {
            let (_, _, _, opt) = try run(name, steps: 3)
            let torch = try OptimizerFixtures.checkpoint("\(name)_step3.pth")
            assertSameTree(try opt.stateDict(), torch)
            let state = try XCTUnwrap(torch.dictValue?["state"]?.dictValue)
            XCTAssertEqual(state.items.map(\.key.pathComponent), ["0", "2", "3", "1"], name)
        }
        let adamw = try OptimizerFixtures.checkpoint("adamw_step3.pth")
        let step = try XCTUnwrap(adamw.dictValue?["state"]?.dictValue?.items.first?.value.dictValue?["step"]?.tensorValue)
        XCTAssertEqual(step.dtype, .float32)
        XCTAssertEqual(step.shape, [])
        XCTAssertEqual(try step.floats(), [3])
    }

    /// torch's state after 3 steps, loaded into fresh ckpt optimizers over torch's parameters,
    /// continues for 2 steps exactly as torch's own run continued.
    func testTorchStateLoadsAndContinuesAsTorch() throws {
        for name in ["sgd_momentum", "adamw"] {
            let s = try OptimizerFixtures.setup()
            let c = try s.named(name)
            let expected = c.expected
            let params = try OptimizerFixtures.parameters(s, values: expected[2])
            // built with other learning rates: loading restores torch's
            var groups = OptimizerFixtures.groups(s, c.groups, params)
            for i in groups.indices { groups[i].learningRate = 0.5 }
            let opt = try OptimizerFixtures.optimizer(c.optimizer, groups)
            try opt.loadStateDict(try OptimizerFixtures.checkpoint("\(name)_step3.pth"))
            XCTAssertEqual(opt.learningRates, name == "adamw" ? [0.01, 0.002] : [0.1, 0.03])
            var worst = 0.0
            for t in 3 ..< 5 {
                try OptimizerFixtures.setGradients(s, params, step: t)
                try opt.step()
                for (k, p) in params.enumerated() {
                    let d = OptimizerFixtures.relativeDifference(p.value.values, expected[t][k])
                    XCTAssertLessThanOrEqual(d, 1e-6, "\(name) step \(t) parameter \(k)")
                    worst = max(worst, d)
                }
            }
            print("\(name) resumed from torch's state: max relative difference \(worst)")
        }
    }

    /// ckpt's state dict written with CkptFormat's writer reads back equal, and a fresh optimizer
    /// loading it continues bit for bit as the uninterrupted one.
    func testStateDictRoundTripsThroughPth() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-opt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["sgd_nesterov", "adam_l2", "adamw"] {
            let (s, c, params, opt) = try run(name, steps: 3)
            let path = dir.appendingPathComponent("\(name).pth").path
            let saved = try opt.stateDict()
            try CheckpointWriter.write(Checkpoint(root: saved, info: FormatInfo(format: .zip)), to: path)
            let back = try CheckpointReader.read(path: path)
            XCTAssertTrue(back.info.isWeightsOnlyLoadable)
            assertSameTree(back.root, saved, rtol: 0)

            let (copies, resumed) = try OptimizerFixtures.make(s, c, values: params.map(\.value.values))
            try resumed.loadStateDict(back.root)
            for t in 3 ..< 6 {
                try OptimizerFixtures.setGradients(s, params, step: t)
                try OptimizerFixtures.setGradients(s, copies, step: t)
                try opt.step()
                try resumed.step()
                XCTAssertEqual(copies.map(\.value), params.map(\.value), "\(name) step \(t)")
            }
        }
    }

    /// A state dict that does not fit is refused with one line, and the optimizer is unchanged.
    func testMismatchedStateDictsAreRefused() throws {
        let (s, c, params, sgd) = try run("sgd_momentum", steps: 3)
        let before = try sgd.stateDict()
        func message(_ v: Value, into opt: any Optimizer) -> String {
            do { try opt.loadStateDict(v); return "no error" } catch { return "\(error)" }
        }
        // one group instead of two
        let one = try SGD(groups: [ParameterGroup(parameters: s.keys.indices.map { (s.keys[$0], params[$0]) }, learningRate: 0.1)])
        XCTAssertEqual(message(before, into: one), "optimizer state dict: holds 2 parameter group(s), the optimizer has 1")
        // three parameters in group 0
        let extra = Parameter(DenseTensor(shape: [5]))
        let three = try SGD(groups: [ParameterGroup(parameters: [("a", params[0]), ("b", params[1]), ("x", extra)], learningRate: 0.1),
                                     ParameterGroup(parameters: [("c", params[2]), ("d", params[3])], learningRate: 0.1)])
        XCTAssertEqual(message(before, into: three),
                       "optimizer state dict: param_groups[0]: holds 2 parameter(s), the optimizer's group 0 holds 3")
        // another shape in the same place
        let wide = Parameter(DenseTensor(shape: [4, 11]))
        let shaped = try SGD(groups: [ParameterGroup(parameters: [("encoder.weight", wide), ("b", params[1])], learningRate: 0.1),
                                      ParameterGroup(parameters: [("c", params[2]), ("d", params[3])], learningRate: 0.1)])
        XCTAssertEqual(message(before, into: shaped),
                       "optimizer state dict: state[0]['momentum_buffer']: has shape [4, 10], parameter 'encoder.weight' has shape [4, 11]")
        XCTAssertNil(shaped.momentumBuffer(of: wide))
        XCTAssertEqual(shaped.learningRates, [0.1, 0.1])
        // another optimizer's state
        let adamw = try OptimizerFixtures.checkpoint("adamw_step3.pth")
        XCTAssertEqual(message(adamw, into: sgd), "optimizer state dict: param_groups[0]: has no 'momentum'")
        let adam = try Adam(groups: OptimizerFixtures.groups(s, c.groups, params))
        XCTAssertEqual(message(adamw, into: adam),
                       "optimizer state dict: param_groups[0]['decoupled_weight_decay']: is True (an AdamW state dict), the optimizer is Adam")
        // not a state dict at all
        XCTAssertEqual(message(.list([]), into: sgd), "optimizer state dict: expected a dict with 'state' and 'param_groups', got list")
        assertSameTree(try sgd.stateDict(), before, rtol: 0)
    }
}
