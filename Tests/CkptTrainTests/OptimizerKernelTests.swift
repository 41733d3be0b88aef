import CkptKernels
import CkptNN
import Foundation
import XCTest
@testable import CkptTrain

/// SGD's and Adam's updates on the AVX-512 lanes (`OptimizerKernels`) against the portable loops:
/// the same operations per element in the same order, so every float is identical, ragged tails
/// included.
final class OptimizerKernelTests: XCTestCase {
    func testVectorisedUpdateIsBitIdenticalToPortable() throws {
        try XCTSkipUnless(OptimizerKernels.isSupported, "no AVX-512 with FMA on this CPU")
        let n = 2 * 16 * 1024 + 37  // over one slice of the cores' split, and a tail of 5 past the lanes
        let configurations: [(momentum: Double, dampening: Double, weightDecay: Double, nesterov: Bool)] = [
            (0, 0, 0, false), (0.9, 0, 0, false), (0.9, 0.1, 1e-4, false), (0.9, 0, 5e-4, true), (0, 0, 1e-2, false),
        ]
        for (k, c) in configurations.enumerated() {
            var results: [[Float]] = []
            for vectorised in [true, false] {
                let saved = OptimizerKernels.isEnabled
                OptimizerKernels.isEnabled = vectorised
                defer { OptimizerKernels.isEnabled = saved }
                let p = Parameter(try DenseTensor(shape: [n], values: (0 ..< n).map { Float(0.5 * cos(0.013 * Double($0))) }))
                let sgd = try SGD(parameters: [("w", p)], learningRate: 0.05, momentum: c.momentum, dampening: c.dampening,
                                  weightDecay: c.weightDecay, nesterov: c.nesterov)
                for t in 0 ..< 3 {
                    try p.setGradient(try DenseTensor(shape: [n], values: (0 ..< n).map {
                        Float(0.2 * sin(0.03 * Double($0) + 0.7 * Double(t)))
                    }))
                    try sgd.step()
                }
                results.append(p.value.values)
            }
            let differing = zip(results[0], results[1]).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            XCTAssertEqual(differing, 0, "configuration \(k) \(c): floats differing between the lanes and the portable loop")
            XCTAssertNotEqual(results[0][n - 1], Float(0.5 * cos(0.013 * Double(n - 1))), "configuration \(k): the tail was updated")
        }
    }

    func testVectorisedAdamIsBitIdenticalToPortable() throws {
        try XCTSkipUnless(OptimizerKernels.isSupported, "no AVX-512 with FMA on this CPU")
        let n = 2 * 16 * 1024 + 37
        // (AdamW, weight decay, beta1): beta1 0.3 takes the other branch of torch's lerp
        let configurations: [(decoupled: Bool, weightDecay: Double, beta1: Double)] = [
            (false, 0, 0.9), (false, 1e-2, 0.9), (true, 1e-2, 0.9), (true, 0, 0.3), (false, 5e-3, 0.3),
        ]
        for (k, c) in configurations.enumerated() {
            var results: [[Float]] = []
            for vectorised in [true, false] {
                let saved = OptimizerKernels.isEnabled
                OptimizerKernels.isEnabled = vectorised
                defer { OptimizerKernels.isEnabled = saved }
                let p = Parameter(try DenseTensor(shape: [n], values: (0 ..< n).map { Float(0.5 * cos(0.013 * Double($0))) }))
                let opt: any Optimizer = c.decoupled
                    ? try AdamW(parameters: [("w", p)], learningRate: 1e-2, betas: (c.beta1, 0.999), weightDecay: c.weightDecay)
                    : try Adam(parameters: [("w", p)], learningRate: 1e-2, betas: (c.beta1, 0.999), weightDecay: c.weightDecay)
                for t in 0 ..< 3 {
                    try p.setGradient(try DenseTensor(shape: [n], values: (0 ..< n).map {
                        Float(0.2 * sin(0.03 * Double($0) + 0.7 * Double(t)))
                    }))
                    try opt.step()
                }
                results.append(p.value.values)
            }
            let differing = zip(results[0], results[1]).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            XCTAssertEqual(differing, 0, "configuration \(k) \(c): floats differing between the lanes and the portable loops")
            XCTAssertNotEqual(results[0][n - 1], Float(0.5 * cos(0.013 * Double(n - 1))), "configuration \(k): the tail was updated")
        }
    }
}
