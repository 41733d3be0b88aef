import CkptKernels
import Foundation
import XCTest

// Logits are [N, C] (N samples, C classes) or [N, C, H, W] (one sample per pixel); targets are
// flat in N, H, W order.

/// The backward of `CrossEntropy` against central differences of a straightforward Double
/// reference written here, on ragged shapes and every option; and the parallel path of large
/// inputs against the same reference and against single-sample calls.
final class CrossEntropyGradientTests: XCTestCase {
    /// A fixed pseudo-random stream (SplitMix64), so failures reproduce.
    struct Stream {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// The loss in Double, term by term as torch defines it, contracted with `upstream` for `.none`
    /// (times the scalar `upstream[0]` otherwise), so one scalar's derivative is the backward.
    static func reference(_ x: [Double], shape: [Int], targets: [Int], options o: CrossEntropy, upstream: [Double]) -> Double {
        let n = shape[0], classes = shape[1], plane = shape.dropFirst(2).reduce(1, *)
        let eps = Double(o.labelSmoothing)
        var total = 0.0, denominator = 0.0
        for image in 0 ..< n {
            for p in 0 ..< plane {
                let s = image * plane + p
                let t = targets[s]
                if t == o.ignoreIndex { continue }
                let z = (0 ..< classes).map { x[(image * classes + $0) * plane + p] }
                let top = z.max() ?? 0
                let logSum = top + log(z.reduce(0) { $0 + exp($1 - top) })
                let w = (0 ..< classes).map { Double(o.classWeights?[$0] ?? 1) }
                var loss = (1 - eps) * w[t] * (logSum - z[t])
                if eps > 0 { loss += eps / Double(classes) * (0 ..< classes).reduce(0) { $0 + w[$1] * (logSum - z[$1]) } }
                denominator += w[t]
                total += o.reduction == .none ? upstream[s] * loss : loss
            }
        }
        switch o.reduction {
        case .mean: return upstream[0] * total / denominator
        case .sum: return upstream[0] * total
        case .none: return total
        }
    }

    struct Problem {
        var logits: DenseTensor
        var targets: [Int]
        var options: CrossEntropy
        var upstream: DenseTensor
    }

    /// Logits in ±`scale`, targets drawn from the classes plus `ignored` share of the ignore index.
    static func problem(_ shape: [Int], _ options: CrossEntropy, seed: UInt64, scale: Double = 3, ignored: Double = 0) throws -> Problem {
        var r = Stream(state: seed)
        let count = shape.reduce(1, *)
        let logits = try DenseTensor(shape: shape, values: (0 ..< count).map { _ in Float((r.uniform() * 2 - 1) * scale) })
        let samples = count / shape[1]
        let targets = (0 ..< samples).map { _ in r.uniform() < ignored ? options.ignoreIndex : r.below(shape[1]) }
        let lossShape = shape.count == 2 ? [shape[0]] : [shape[0], shape[2], shape[3]]
        let upstream = options.reduction == .none
            ? try DenseTensor(shape: lossShape, values: (0 ..< samples).map { _ in Float(r.uniform() * 2 - 0.5) })
            : try DenseTensor(shape: [], values: [Float(0.5 + r.uniform())])
        return Problem(logits: logits, targets: targets, options: options, upstream: upstream)
    }

    /// Every dLogits element against a central difference of the reference in Double.
    /// Tolerance `1e-6 · max |difference quotient|`: the kernel's values are Float-rounded.
    func checkFiniteDifferences(_ p: Problem, line: UInt = #line) throws {
        let analytic = try p.options.backward(p.logits, targets: p.targets, dLoss: p.upstream)
        let x = p.logits.values.map(Double.init), u = p.upstream.values.map(Double.init)
        let loss = { (v: [Double]) in Self.reference(v, shape: p.logits.shape, targets: p.targets, options: p.options, upstream: u) }
        let h = 1e-5
        var numeric = [Double](repeating: 0, count: x.count)
        for i in x.indices {
            var plus = x, minus = x
            plus[i] += h
            minus[i] -= h
            numeric[i] = (loss(plus) - loss(minus)) / (2 * h)
        }
        let scale = numeric.map(abs).max() ?? 0
        XCTAssertGreaterThan(scale, 0, "a problem with no gradient checks nothing", line: line)
        for i in x.indices where abs(Double(analytic.values[i]) - numeric[i]) > 1e-6 * scale {
            XCTFail("dLogits[\(i)] of \(p.logits.shape) \(p.options): kernel \(analytic.values[i]), differences \(numeric[i])", line: line)
        }
    }

    func testFiniteDifferencesOnRows() throws {
        try checkFiniteDifferences(Self.problem([7, 3], CrossEntropy(), seed: 1))
        try checkFiniteDifferences(Self.problem([5, 4], CrossEntropy(reduction: .sum, labelSmoothing: 0.1, classWeights: [0.5, 2, 1, 0.3]),
                                                seed: 2, ignored: 0.3))
        try checkFiniteDifferences(Self.problem([6, 5], CrossEntropy(reduction: .none, labelSmoothing: 0.25,
                                                                     classWeights: [1, 0.2, 3, 0.7, 1.1], ignoreIndex: 1), seed: 3))
        try checkFiniteDifferences(Self.problem([9, 2], CrossEntropy(labelSmoothing: 0.1, classWeights: [0.4, 1.6]), seed: 4, ignored: 0.4))
        try checkFiniteDifferences(Self.problem([1, 11], CrossEntropy(labelSmoothing: 1), seed: 5))
    }

    func testFiniteDifferencesPerPixel() throws {
        try checkFiniteDifferences(Self.problem([2, 3, 3, 5], CrossEntropy(labelSmoothing: 0.1, classWeights: [0.3, 1.7, 1],
                                                                           ignoreIndex: 255), seed: 6, ignored: 0.25))
        try checkFiniteDifferences(Self.problem([3, 4, 1, 7], CrossEntropy(reduction: .none, ignoreIndex: 255), seed: 7, ignored: 0.2))
        try checkFiniteDifferences(Self.problem([1, 5, 2, 1], CrossEntropy(reduction: .sum, classWeights: [2, 1, 0.5, 0.1, 3]), seed: 8))
    }

    func testFiniteDifferencesWithLargeLogits() throws {
        try checkFiniteDifferences(Self.problem([4, 6], CrossEntropy(labelSmoothing: 0.1), seed: 9, scale: 80))
        try checkFiniteDifferences(Self.problem([2, 3, 2, 2], CrossEntropy(reduction: .sum, classWeights: [1, 2, 3]), seed: 10, scale: 85))
    }

    /// Large enough to split into parts across the cores, with parts that cross image boundaries:
    /// the loss against the reference, a sample of coordinates against central differences, and
    /// each sample's gradient against a call on that sample alone (bit-identical).
    func testParallelPartsAgreeWithReferenceAndSingleSamples() throws {
        let weights: [Float] = [0.5, 1.5, 1, 2, 0.25, 1, 3]
        for shape in [[3, 7, 43, 53], [5000, 7]] {
            let p = try Self.problem(shape, CrossEntropy(labelSmoothing: 0.1, classWeights: weights, ignoreIndex: 255),
                                     seed: 11, ignored: 0.1)
            let (loss, dLogits) = try p.options.forwardBackward(p.logits, targets: p.targets, dLoss: p.upstream)
            let x = p.logits.values.map(Double.init), u = p.upstream.values.map(Double.init)
            let f = { (v: [Double]) in Self.reference(v, shape: shape, targets: p.targets, options: p.options, upstream: u) }
            let expected = f(x)
            XCTAssertEqual(Double(loss.values[0]) * u[0], expected, accuracy: 1e-6 * abs(expected), "\(shape)")
            var r = Stream(state: 12)
            let scale = Double(dLogits.maxMagnitude)
            for _ in 0 ..< 8 {
                let i = r.below(x.count)
                var plus = x, minus = x
                plus[i] += 1e-4
                minus[i] -= 1e-4
                let numeric = (f(plus) - f(minus)) / 2e-4
                XCTAssertEqual(Double(dLogits.values[i]), numeric, accuracy: 1e-6 * scale, "\(shape) dLogits[\(i)]")
            }
            // per sample, reduction none makes each gradient row independent of the others
            let none = CrossEntropy(reduction: .none, labelSmoothing: 0.1, classWeights: weights, ignoreIndex: 255)
            let lossShape = shape.count == 2 ? [shape[0]] : [shape[0], shape[2], shape[3]]
            let up = try DenseTensor(shape: lossShape, values: (0 ..< p.targets.count).map { Float($0 % 5) * 0.25 - 0.5 })
            let all = try none.forwardBackward(p.logits, targets: p.targets, dLoss: up)
            let classes = shape[1], plane = shape.dropFirst(2).reduce(1, *)
            for s in stride(from: 0, to: p.targets.count, by: 97) {
                let n = s / plane, q = s % plane
                let at = (0 ..< classes).map { (n * classes + $0) * plane + q }
                let one = try none.forwardBackward(try DenseTensor(shape: [1, classes], values: at.map { p.logits.values[$0] }),
                                                   targets: [p.targets[s]], dLoss: DenseTensor(shape: [1], values: [up.values[s]]))
                XCTAssertEqual(one.loss.values[0].bitPattern, all.loss.values[s].bitPattern, "\(shape) loss[\(s)]")
                XCTAssertEqual(one.dLogits.values.map(\.bitPattern), at.map { all.dLogits.values[$0].bitPattern }, "\(shape) sample \(s)")
            }
        }
    }

    func testSoftmaxSamplesSumToOneAcrossParts() throws {
        let p = try Self.problem([2, 5, 61, 67], CrossEntropy(), seed: 13, scale: 40)
        let y = try Softmax.forward(p.logits)
        let plane = 61 * 67
        for s in stride(from: 0, to: 2 * plane, by: 31) {
            let n = s / plane, q = s % plane
            let sum = (0 ..< 5).reduce(0.0) { $0 + Double(y.values[(n * 5 + $1) * plane + q]) }
            XCTAssertEqual(sum, 1, accuracy: 5e-7, "sample \(s)")
        }
    }
}
