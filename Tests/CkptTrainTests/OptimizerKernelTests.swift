import CkptKernels
import CkptNN
import Foundation
import XCTest
@testable import CkptTrain

/// SGD's and Adam's updates on the AVX-512 lanes (`OptimizerKernels`) against the portable loops:
/// the same operations per element in the same order, so every float is identical, ragged tails
/// included.
final class OptimizerKernelTests: XCTestCase {
    let n = 2 * 16 * 1024 + 37  // over one slice of the cores' split, and a tail of 5 past the lanes

    /// The weights after three steps of the optimizer `make` builds, on the lanes or the portable loop.
    func threeSteps(vectorised: Bool, _ make: (Parameter) throws -> any Optimizer) throws -> [Float] {
        let saved = OptimizerKernels.isEnabled
        OptimizerKernels.isEnabled = vectorised
        defer { OptimizerKernels.isEnabled = saved }
        let p = Parameter(try DenseTensor(shape: [n], values: (0 ..< n).map { Float(0.5 * cos(0.013 * Double($0))) }))
        let optimizer = try make(p)
        for t in 0 ..< 3 {
            try p.setGradient(try DenseTensor(shape: [n], values: (0 ..< n).map {
                Float(0.2 * sin(0.03 * Double($0) + 0.7 * Double(t)))
            }))
            try optimizer.step()
        }
        return p.value.values
    }

    /// Both ways give the same bits, and the tail was updated.
    func checkIdentical(_ what: String, _ make: (Parameter) throws -> any Optimizer) throws {
        let lanes = try threeSteps(vectorised: true, make), portable = try threeSteps(vectorised: false, make)
        let differing = zip(lanes, portable).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(what): floats differing between the lanes and the portable loop")
        XCTAssertNotEqual(lanes[n - 1], Float(0.5 * cos(0.013 * Double(n - 1))), "\(what): the tail was updated")
    }

    func testVectorisedUpdateIsBitIdenticalToPortable() throws {
        try XCTSkipUnless(OptimizerKernels.isSupported, "no AVX-512 with FMA on this CPU")
        let configurations: [(momentum: Double, dampening: Double, weightDecay: Double, nesterov: Bool)] = [
            (0, 0, 0, false), (0.9, 0, 0, false), (0.9, 0.1, 1e-4, false), (0.9, 0, 5e-4, true), (0, 0, 1e-2, false),
        ]
        for (k, c) in configurations.enumerated() {
            try checkIdentical("SGD configuration \(k) \(c)") { p in
                try SGD(parameters: [("w", p)], learningRate: 0.05, momentum: c.momentum, dampening: c.dampening,
                        weightDecay: c.weightDecay, nesterov: c.nesterov)
            }
        }
    }

    func testVectorisedAdamIsBitIdenticalToPortable() throws {
        try XCTSkipUnless(OptimizerKernels.isSupported, "no AVX-512 with FMA on this CPU")
        // (AdamW, weight decay, beta1): beta1 0.3 takes the other branch of torch's lerp
        let configurations: [(decoupled: Bool, weightDecay: Double, beta1: Double)] = [
            (false, 0, 0.9), (false, 1e-2, 0.9), (true, 1e-2, 0.9), (true, 0, 0.3), (false, 5e-3, 0.3),
        ]
        for (k, c) in configurations.enumerated() {
            try checkIdentical("Adam configuration \(k) \(c)") { p -> any Optimizer in
                if c.decoupled {
                    return try AdamW(parameters: [("w", p)], learningRate: 1e-2, betas: (c.beta1, 0.999), weightDecay: c.weightDecay)
                }
                return try Adam(parameters: [("w", p)], learningRate: 1e-2, betas: (c.beta1, 0.999), weightDecay: c.weightDecay)
            }
        }
    }
}
