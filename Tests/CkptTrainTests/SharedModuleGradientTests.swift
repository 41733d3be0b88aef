import CkptKernels
import CkptNN
import CkptTensor
import Foundation
import XCTest
@testable import CkptTrain

// N images, C channels, H rows, W columns (NCHW).

/// A module used twice in one pass (SegNet's repeated Conv–BatchNorm–ReLU triples) must get the
/// gradient of two separate copies summed: the same arithmetic, so the sums are compared exactly
/// (to float rounding of one addition), in training mode (batch statistics per use) and eval mode.
final class SharedModuleGradientTests: XCTestCase {
    /// `[conv a, bn a, relu, conv b, bn b, relu, conv b', bn b', relu, conv c]` where b' is b itself
    /// (shared) or a copy of it.
    func network(shared: Bool, channels k: Int) -> (Sequential, [Module]) {
        var rng = SeededGenerator(seed: 11)
        let convA = Conv2d(2, k, kernelSize: 3, padding: 1, rng: &rng)
        let convB = Conv2d(k, k, kernelSize: 3, padding: 1, rng: &rng)
        let convC = Conv2d(k, 3, kernelSize: 3, padding: 1, rng: &rng)
        let bnA = BatchNorm2d(k), bnB = BatchNorm2d(k)
        var tweak = SeededGenerator(seed: 5)
        for bn in [bnA, bnB] {
            let w = Initialization.uniform([k], bound: 0.5, using: &tweak)
            bn.weight.value = try! DenseTensor(shape: [k], values: w.values.map { $0 + 1 })
            bn.bias.value = Initialization.uniform([k], bound: 0.3, using: &tweak)
        }
        var convB2 = convB, bnB2 = bnB
        if !shared {
            var copyRng = SeededGenerator(seed: 0)
            let c = Conv2d(k, k, kernelSize: 3, padding: 1, rng: &copyRng)
            c.weight.value = convB.weight.value
            c.bias?.value = convB.bias!.value
            let b = BatchNorm2d(k)
            b.weight.value = bnB.weight.value
            b.bias.value = bnB.bias.value
            convB2 = c
            bnB2 = b
        }
        let relu = ReLU()
        let net = Sequential([convA, bnA, relu, convB, bnB, relu, convB2, bnB2, relu, convC])
        return (net, [convB, bnB, convB2, bnB2])
    }

    func check(training: Bool, channels: Int, shape: [Int]) throws {
        var rng = SeededGenerator(seed: 3)
        let x = Initialization.uniform(shape, bound: 1, using: &rng)
        var grads: [[Float]] = []
        var outputs: [DenseTensor] = []
        for shared in [true, false] {
            let (net, parts) = network(shared: shared, channels: channels)
            net.setTraining(training)
            let dx = try BackwardPlumbingTests.gradients(net, [x], inputNeedsGradient: true)
            let context = ForwardContext()
            outputs.append(try net.forward(inputs: [x], context: context))
            let convB = parts[0] as! Conv2d, bnB = parts[1] as! BatchNorm2d
            let convB2 = parts[2] as! Conv2d, bnB2 = parts[3] as! BatchNorm2d
            func total(_ a: Parameter, _ b: Parameter) throws -> [Float] {
                let ga = try XCTUnwrap(a.gradient).values
                if a === b { return ga }
                return zip(ga, try XCTUnwrap(b.gradient).values).map { $0 + $1 }
            }
            grads.append(try total(convB.weight, convB2.weight) + total(convB.bias!, convB2.bias!)
                         + total(bnB.weight, bnB2.weight) + total(bnB.bias, bnB2.bias) + XCTUnwrap(dx[0]).values)
        }
        XCTAssertEqual(grads[0].count, grads[1].count)
        let scale = grads[1].map { abs($0) }.max() ?? 1
        var worst = 0.0
        for (a, b) in zip(grads[0], grads[1]) { worst = max(worst, Double(abs(a - b)) / Double(scale)) }
        XCTAssertLessThan(worst, 1e-6, "shared module's gradients against two copies' sum (training: \(training), \(channels) channels, \(shape))")
    }

    func testSharedTripleInTrainingModeSumsBothUses() throws {
        for (k, shape) in [(6, [3, 2, 7, 5]), (64, [2, 2, 8, 8]), (256, [2, 2, 8, 8])] { try check(training: true, channels: k, shape: shape) }
    }

    func testSharedTripleInEvalModeSumsBothUses() throws {
        for (k, shape) in [(6, [3, 2, 7, 5]), (64, [2, 2, 8, 8]), (256, [2, 2, 8, 8])] { try check(training: false, channels: k, shape: shape) }
    }
}
