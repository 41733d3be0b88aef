import CkptKernels
import CkptNN
import CkptTensor
import Foundation
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// Readers for fixtures/zoo and the weight/input formulas generate_zoo.py documents.
enum Fixtures {
    static func url(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/zoo/\(name)")
    }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// The state dict of the formula: entry k, element i, from `s = sin(0.37·i + 0.11·k)`.
    static func formulaStateDict(_ specs: [ParameterSpec]) throws -> [(key: String, tensor: Tensor)] {
        try specs.enumerated().map { k, spec in
            let n = spec.elementCount
            if spec.key.hasSuffix("num_batches_tracked") {
                return (spec.key, try Tensor(dtype: .int64, shape: spec.shape, bytes: [UInt8](repeating: 0, count: 8 * n)))
            }
            let fan = spec.shape.count >= 2 ? spec.shape.dropFirst().reduce(1, *) : 1
            let gain = 2 / Double(fan).squareRoot()
            var v = [Float](repeating: 0, count: n)
            for i in 0 ..< n {
                let s = sin(0.37 * Double(i) + 0.11 * Double(k))
                let x: Double
                if spec.key.hasSuffix("running_var") { x = 0.5 + 0.25 * (1 + s) }
                else if spec.key.hasSuffix("running_mean") { x = 0.1 * s }
                else if spec.shape.count >= 2 { x = s * gain }
                else if spec.key.hasSuffix("weight") { x = 1 + 0.2 * s }
                else { x = 0.1 * s }
                v[i] = Float(x)
            }
            return (spec.key, try Tensor(float32: v, shape: spec.shape))
        }
    }

    /// Forward argument `a`: element i is `sin(0.7·i + 0.3 + a)`.
    static func formulaInput(_ shape: [Int], argument a: Int) throws -> DenseTensor {
        let n = shape.reduce(1, *)
        return try DenseTensor(shape: shape, values: (0 ..< n).map { Float(sin(0.7 * Double($0) + 0.3 + Double(a))) })
    }

    /// A golden summary: shape, sum, sum of squares, max|y|, and all values or the first 64.
    struct Summary {
        var shape: [Int]
        var sum: Double
        var sumOfSquares: Double
        var maxAbs: Double
        var values: [Float]
        var isComplete: Bool

        init(_ d: [String: Any]) throws {
            shape = try XCTUnwrap(d["shape"] as? [Int])
            sum = try XCTUnwrap(d["sum"] as? Double)
            sumOfSquares = try XCTUnwrap(d["sum_of_squares"] as? Double)
            maxAbs = try XCTUnwrap(d["max_abs"] as? Double)
            if let v = d["values"] as? [Double] {
                values = v.map { Float($0) }
                isComplete = true
            } else {
                values = try XCTUnwrap(d["first"] as? [Double]).map { Float($0) }
                isComplete = false
            }
        }

        /// Largest |Δ| over the stored values, after checking the shape and the aggregates;
        /// fails the test when `max|Δ| > rtol·max|y| + atol`.
        @discardableResult
        func check(_ y: DenseTensor, rtol: Double = 1e-4, atol: Double = 1e-6, _ what: String,
                   file: StaticString = #filePath, line: UInt = #line) -> Double {
            XCTAssertEqual(y.shape, shape, "\(what): shape", file: file, line: line)
            guard y.shape == shape else { return .infinity }
            let bound = rtol * maxAbs + atol
            var worst = 0.0
            for (a, e) in zip(y.values, values) { worst = max(worst, Double(abs(a - e))) }
            XCTAssertLessThanOrEqual(worst, bound, "\(what): max|Δ| \(worst) > \(bound)", file: file, line: line)
            let ours = y.values.reduce(0.0) { $0 + Double($1) }
            let oursSq = y.values.reduce(0.0) { $0 + Double($1) * Double($1) }
            let n = Double(y.count)
            // aggregates only catch gross errors in the elements not stored: the per-element bound summed
            XCTAssertEqual(ours, sum, accuracy: bound * n, "\(what): sum", file: file, line: line)
            XCTAssertEqual(oursSq, sumOfSquares, accuracy: 2 * bound * maxAbs * n + 1e-9, "\(what): sum of squares", file: file, line: line)
            XCTAssertEqual(Double(y.maxMagnitude), maxAbs, accuracy: bound, "\(what): max|y|", file: file, line: line)
            return worst
        }
    }
}
