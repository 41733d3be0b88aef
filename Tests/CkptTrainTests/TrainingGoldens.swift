import CkptKernels
import CkptNN
import CkptTensor
import CkptZoo
import Foundation
import XCTest
@testable import CkptTrain

// N images, C channels, H rows, W columns (NCHW).

/// Readers for fixtures/train/models.json (written by fixtures/train/generate_models.py from torch)
/// and the formulas it documents: weights, inputs, targets, dropout masks.
enum TrainingGoldens {
    static func url(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/train/\(name)")
    }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// The case named `name` of models.json.
    static func modelCase(_ name: String) throws -> [String: Any] {
        let root = try json("models.json")
        let cases = try XCTUnwrap(root["cases"] as? [String: Any])
        return try XCTUnwrap(cases[name] as? [String: Any], "no case \(name) in models.json")
    }

    /// `s(i, k) = 2·h/2³² − 1` with `h = (2654435761·(i+1) + 40503·(k+1)) mod 2³²`: the training
    /// goldens' full-rank hash (the zoo's sin formula makes rank-2 weights that batch norm turns
    /// into rounding noise).
    static func hash(_ i: Int, _ k: Int) -> Double {
        let h = (UInt64(2_654_435_761) &* UInt64(i + 1) &+ UInt64(40503) &* UInt64(k + 1)) & 0xFFFF_FFFF
        return 2 * (Double(h) / 4_294_967_296) - 1
    }

    /// The mixing hash of cases marked `"hash": "mix"` (segnet in training mode): splitmix64's
    /// finaliser of `(i + (k+1)·2⁴⁰)·0x9E3779B97F4A7C15`, its high 32 bits as `h`. Its weight
    /// matrices are as far from low rank as random ones.
    static func mixHash(_ i: Int, _ k: Int) -> Double {
        var x = (UInt64(i) &+ (UInt64(k + 1) << 40)) &* 0x9E37_79B9_7F4A_7C15
        x ^= x >> 30
        x = x &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 27
        x = x &* 0x94D0_49BB_1331_11EB
        x ^= x >> 31
        return 2 * (Double(x >> 32) / 4_294_967_296) - 1
    }

    /// The hash a case's weights and inputs come from.
    static func hash(of golden: [String: Any]) -> (Int, Int) -> Double {
        if golden["hash"] as? String == "mix" { return { mixHash($0, $1) } }
        return { hash($0, $1) }
    }

    /// The training formula's state dict: entry k, element i, from `s(i, k)`.
    static func formulaStateDict(_ specs: [ParameterSpec], hash: (Int, Int) -> Double = TrainingGoldens.hash(_:_:)) throws -> StateDict {
        StateDict(try specs.enumerated().map { k, spec in
            if spec.dtype == .int64 {
                return (spec.key, try Tensor(dtype: .int64, shape: spec.shape, bytes: [UInt8](repeating: 0, count: 8 * spec.elementCount)))
            }
            let fan = spec.shape.count >= 2 ? spec.shape.dropFirst().reduce(1, *) : 1
            let gain = (6 / Double(fan)).squareRoot()
            let values = (0 ..< spec.elementCount).map { i -> Float in
                let s = hash(i, k)
                if spec.key.hasSuffix("running_var") { return Float(0.5 + 0.25 * (1 + s)) }
                if spec.key.hasSuffix("running_mean") { return Float(0.1 * s) }
                if spec.shape.count >= 2 { return Float(s * gain) }
                return Float(spec.key.hasSuffix("weight") ? 1 + 0.2 * s : 0.1 * s)
            }
            return (spec.key, try Tensor(float32: values, shape: spec.shape))
        })
    }

    /// Forward argument `a`: element i is `s(i, 1000 + a)`.
    static func input(_ shape: [Int], argument a: Int, hash: (Int, Int) -> Double = TrainingGoldens.hash(_:_:)) throws -> DenseTensor {
        let n = shape.reduce(1, *)
        return try DenseTensor(shape: shape, values: (0 ..< n).map { Float(hash($0, 1000 + a)) })
    }

    /// Target j is `(7j + 3) mod classes`.
    static func targets(count: Int, classes: Int) -> [Int] {
        (0 ..< count).map { (7 * $0 + 3) % classes }
    }

    /// The d-th dropout call of step t keeps element i iff `(31i + 17d + 7t) mod 10 < 5`, scaled by 2.
    static func dropoutMask(step t: Int) -> (String, Int, Int) -> [Float] {
        { _, d, count in (0 ..< count).map { i in (31 * i + 17 * d + 7 * t) % 10 < 5 ? 2 : 0 } }
    }

    /// A golden tensor: shape, sum, max|x|, and every value or the values at `(j·1000003) mod n`.
    struct Summary {
        var shape: [Int]
        var sum: Double
        var absMax: Double
        var values: [Float]?
        var samples: [Float]?

        init(_ any: Any?) throws {
            let d = try XCTUnwrap(any as? [String: Any])
            shape = try XCTUnwrap(d["shape"] as? [Int])
            sum = try XCTUnwrap((d["sum"] as? NSNumber)?.doubleValue)
            absMax = try XCTUnwrap((d["abs_max"] as? NSNumber)?.doubleValue)
            values = (d["values"] as? [NSNumber])?.map { $0.floatValue }
            samples = (d["samples"] as? [NSNumber])?.map { $0.floatValue }
        }

        /// Fails unless every stored value is within `rtol·max|x| + atol` (and the shape matches);
        /// returns the largest difference relative to max|x|.
        @discardableResult
        func check(_ t: DenseTensor, rtol: Double = 1e-4, atol: Double = 1e-7, _ what: String,
                   file: StaticString = #filePath, line: UInt = #line) -> Double {
            XCTAssertEqual(t.shape, shape, "\(what): shape", file: file, line: line)
            guard t.shape == shape else { return .infinity }
            let n = t.count
            var pairs: [(Float, Float)] = []
            if let values {
                pairs = zip(t.values, values).map { ($0, $1) }
            } else if let samples {
                pairs = samples.enumerated().map { j, v in (t.values[(j * 1_000_003) % n], v) }
            }
            let bound = rtol * absMax + atol
            var worst = 0.0
            for (k, (a, b)) in pairs.enumerated() {
                let d = abs(Double(a) - Double(b))
                worst = max(worst, d)
                if !(d <= bound) {
                    XCTFail("\(what): element \(k): \(a) vs torch \(b) (|Δ| \(d) > \(bound))", file: file, line: line)
                    break
                }
            }
            let total = t.values.reduce(0.0) { $0 + Double($1) }
            // the sum of n values: allow each its share of the tolerance
            XCTAssertEqual(total, sum, accuracy: bound * Double(max(n, 1)).squareRoot() * 4 + 1e-6,
                           "\(what): sum", file: file, line: line)
            return absMax > 0 ? worst / absMax : worst
        }
    }
}
