import CkptKernels
import Foundation
import XCTest

// Logits are [N, C] (N samples, C classes) or [N, C, H, W] (one sample per pixel); targets are
// flat in N, H, W order.

/// Every case of fixtures/train/losses.json (written by generate_losses.py from torch): loss and
/// dLogits of `F.cross_entropy`, and `torch.softmax`, compared element by element; and the exact
/// error messages for bad input.
///
/// Tolerance: `|ours − torch| ≤ 1e-6 · max |torch|` over each compared tensor. Torch works in
/// float32 and we sum in Double, so the two differ by a few float32 rounding steps.
final class CrossEntropyTests: XCTestCase {
    struct Golden {
        var kind: String
        var name: String
        var options: CrossEntropy
        var dimension: Int
        var logits: DenseTensor
        var targets: [Int]
        var upstream: DenseTensor?
        var expected: [String: DenseTensor]
    }

    static let tolerance: Float = 1e-6

    static let goldens: Result<[String: Golden], Error> = Result {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/train/losses.json")
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
        guard let root, (root["torch_version"] as? String)?.isEmpty == false, let cases = root["cases"] as? [[String: Any]] else {
            throw CocoaError(.fileReadCorruptFile)
        }
        var out = [String: Golden]()
        for c in cases {
            let o = c["options"] as? [String: Any] ?? [:]
            let reduction = LossReduction(rawValue: o["reduction"] as? String ?? "mean") ?? .mean
            let options = CrossEntropy(reduction: reduction, labelSmoothing: Float(o["label_smoothing"] as? Double ?? 0),
                                       classWeights: (o["weight"] as? [Double])?.map(Float.init),
                                       ignoreIndex: o["ignore_index"] as? Int ?? -100)
            var expected = [String: DenseTensor]()
            for key in ["loss", "dlogits", "output"] where c[key] != nil { expected[key] = try tensor(c[key]) }
            let g = Golden(kind: c["kind"] as? String ?? "", name: c["name"] as? String ?? "", options: options,
                           dimension: c["dim"] as? Int ?? 1, logits: try tensor(c["logits"]),
                           targets: c["targets"] as? [Int] ?? [], upstream: try c["upstream"].map(tensor), expected: expected)
            out[g.name] = g
        }
        return out
    }

    /// A `{"shape", "values"}` object; NaN and infinities arrive as strings.
    static func tensor(_ any: Any?) throws -> DenseTensor {
        guard let d = any as? [String: Any], let shape = d["shape"] as? [Int], let raw = d["values"] as? [Any] else {
            throw CocoaError(.fileReadCorruptFile)
        }
        let values = try raw.map { v -> Float in
            if let x = v as? Double { return Float(x) }
            guard let s = v as? String, let x = Float(s) else { throw CocoaError(.fileReadCorruptFile) }
            return x
        }
        return try DenseTensor(shape: shape, values: values)
    }

    /// Largest `|got − expected| / max |expected|`, after checking shapes and NaN positions.
    static func relativeError(_ got: DenseTensor, _ expected: DenseTensor, _ what: String) -> Float {
        XCTAssertEqual(got.shape, expected.shape, what)
        guard got.shape == expected.shape else { return .infinity }
        let scale = expected.values.filter { !$0.isNaN }.map(abs).max() ?? 0
        var worst: Float = 0
        for (i, (a, e)) in zip(got.values, expected.values).enumerated() {
            if e.isNaN { XCTAssertTrue(a.isNaN, "\(what)[\(i)]: got \(a), torch NaN"); continue }
            let d = abs(a - e)
            if d > tolerance * scale { XCTFail("\(what)[\(i)]: got \(a), torch \(e) (scale \(scale))") }
            worst = max(worst, scale > 0 ? d / scale : d)
        }
        return worst
    }

    /// Runs the named torch cases: loss and dLogits from `forwardBackward` against torch, and
    /// `forward` / `backward` alone bit-identical to it. Returns the worst relative errors.
    @discardableResult
    func check(_ names: [String]) throws -> (loss: Float, dLogits: Float) {
        var worst: (loss: Float, dLogits: Float) = (0, 0)
        for name in names {
            let g = try XCTUnwrap(try Self.goldens.get()[name], "no golden case \(name)")
            let upstream = try XCTUnwrap(g.upstream)
            let (loss, dLogits) = try g.options.forwardBackward(g.logits, targets: g.targets, dLoss: upstream)
            worst.loss = max(worst.loss, Self.relativeError(loss, try XCTUnwrap(g.expected["loss"]), "\(name) loss"))
            worst.dLogits = max(worst.dLogits, Self.relativeError(dLogits, try XCTUnwrap(g.expected["dlogits"]), "\(name) dLogits"))
            let alone = try g.options.forward(g.logits, targets: g.targets)
            XCTAssertEqual(alone.shape, loss.shape, name)
            XCTAssertEqual(alone.values.map(\.bitPattern), loss.values.map(\.bitPattern), "\(name): forward alone")
            let back = try g.options.backward(g.logits, targets: g.targets, dLoss: upstream)
            XCTAssertEqual(back.values.map(\.bitPattern), dLogits.values.map(\.bitPattern), "\(name): backward alone")
        }
        return worst
    }

    static let groups: [String: [String]] = [
        "reductions": ["plain_mean", "plain_sum", "plain_none", "plain_mean_upstream"],
        "weights": ["weights_mean", "weights_sum", "weights_none"],
        "smoothing": ["smooth_mean", "smooth_sum", "smooth_none", "smooth_weights_mean", "smooth_weights_sum",
                      "smooth_weights_none", "smooth_one_weights_mean"],
        "ignore": ["ignore_mean", "ignore_sum", "ignore_none", "ignore_weights_mean", "ignore_smooth_mean",
                   "ignore_weights_smooth_mean", "ignore_weights_smooth_sum", "ignore_weights_smooth_none",
                   "ignore_valid_class_weights_smooth_mean"],
        "allIgnored": ["all_ignored_mean", "all_ignored_sum", "all_ignored_weights_smooth_mean"],
        "pixels": ["pixel_weights_mean", "pixel_weights_sum", "pixel_weights_none", "pixel_weights_smooth_mean",
                   "pixel_smooth_none", "pixel_plain_mean"],
        "large": ["large_mean", "large_weights_smooth_mean", "large_none", "large_random_sum"],
        "oneClass": ["one_class_mean", "one_class_weights_smooth_sum", "one_class_pixel_none"],
        "softmax": ["softmax_rows", "softmax_pixels", "softmax_large", "softmax_last_dim"],
    ]

    func testReductionsMatchTorch() throws { try check(Self.groups["reductions"] ?? []) }
    func testClassWeightsMatchTorch() throws { try check(Self.groups["weights"] ?? []) }
    func testLabelSmoothingMatchesTorch() throws { try check(Self.groups["smoothing"] ?? []) }
    func testIgnoreIndexMatchesTorch() throws { try check(Self.groups["ignore"] ?? []) }
    func testPerPixelMatchesTorch() throws { try check(Self.groups["pixels"] ?? []) }
    func testLargeLogitsMatchTorch() throws { try check(Self.groups["large"] ?? []) }

    func testAllIgnoredIsNaNForMeanAndZeroForSum() throws {
        try check(Self.groups["allIgnored"] ?? [])
        let all = try XCTUnwrap(try Self.goldens.get()["all_ignored_mean"])
        let (loss, dLogits) = try all.options.forwardBackward(all.logits, targets: all.targets)
        XCTAssertTrue(loss.values[0].isNaN)
        XCTAssertEqual(dLogits.values, [Float](repeating: 0, count: all.logits.count))
        let sum = try CrossEntropy(reduction: .sum).forwardBackward(all.logits, targets: all.targets)
        XCTAssertEqual(sum.loss.values, [0])
        XCTAssertEqual(sum.dLogits.values, [Float](repeating: 0, count: all.logits.count))
    }

    func testOneClassIsZero() throws {
        try check(Self.groups["oneClass"] ?? [])
        let x = try DenseTensor(shape: [3, 1], values: [5, -80, 0.25])
        let r = try CrossEntropy(labelSmoothing: 0.4, classWeights: [3]).forwardBackward(x, targets: [0, 0, 0])
        XCTAssertEqual(r.loss.values, [0])
        XCTAssertEqual(r.dLogits.values.map(abs), [0, 0, 0])
    }

    func testSoftmaxMatchesTorch() throws {
        for name in Self.groups["softmax"] ?? [] {
            let g = try XCTUnwrap(try Self.goldens.get()[name])
            let out = try Softmax.forward(g.logits, dimension: g.dimension)
            _ = Self.relativeError(out, try XCTUnwrap(g.expected["output"]), name)
        }
    }

    func testEveryGoldenCaseIsChecked() throws {
        let listed = Set(Self.groups.values.joined())
        XCTAssertEqual(Set(try Self.goldens.get().keys), listed)
    }

    func testEmptyBatchIsNaNForMeanAsInTorch() throws {
        let x = DenseTensor(shape: [0, 5])
        XCTAssertTrue(try CrossEntropy().forward(x, targets: []).values[0].isNaN)
        XCTAssertEqual(try CrossEntropy(reduction: .sum).forward(x, targets: []).values, [0])
        XCTAssertEqual(try CrossEntropy(reduction: .none).forward(x, targets: []).shape, [0])
        XCTAssertEqual(try CrossEntropy().backward(x, targets: []).shape, [0, 5])
    }

    // MARK: errors

    func assertError(_ message: String, line: UInt = #line, _ body: () throws -> Any) {
        XCTAssertThrowsError(try body(), line: line) { error in
            XCTAssertEqual("\(error)", message, line: line)
            XCTAssertTrue(error is KernelError, line: line)
        }
    }

    func testTargetOutOfRangeNamesPositionValueAndClassCount() throws {
        let x = DenseTensor(shape: [3, 5])
        assertError("cross_entropy: target 7 at index 1 is out of bounds, expected a class in 0..<5 or ignore index -100") {
            try CrossEntropy().forward(x, targets: [0, 7, 1])
        }
        assertError("cross_entropy: target -1 at index 2 is out of bounds, expected a class in 0..<5 or ignore index -100") {
            try CrossEntropy(reduction: .none).forwardBackward(x, targets: [0, -100, -1], dLoss: DenseTensor(shape: [3]))
        }
        assertError("cross_entropy: target 5 at index 0 is out of bounds, expected a class in 0..<5 or ignore index 4") {
            try CrossEntropy(ignoreIndex: 4).backward(x, targets: [5, 4, 0])
        }
        var t = [Int](repeating: 0, count: 30)
        t[3] = 255
        t[17] = 9
        assertError("cross_entropy: target 9 at index 17 (image 1, row 0, column 2) is out of bounds, "
            + "expected a class in 0..<4 or ignore index 255") {
            try CrossEntropy(ignoreIndex: 255).forward(DenseTensor(shape: [2, 4, 3, 5]), targets: t)
        }
    }

    func testShapeAndOptionErrors() throws {
        let x = DenseTensor(shape: [6, 3])
        let t = [Int](repeating: 0, count: 6)
        assertError("cross_entropy: target has shape [5], expected [6] (N of input [6, 3])") {
            try CrossEntropy().forward(x, targets: [0, 1, 2, 0, 1])
        }
        assertError("cross_entropy: target has shape [6], expected [30] (N·H·W of input [2, 4, 3, 5])") {
            try CrossEntropy().forward(DenseTensor(shape: [2, 4, 3, 5]), targets: t)
        }
        assertError("cross_entropy: weight has shape [4], expected [3] (one per class)") {
            try CrossEntropy(classWeights: [1, 2, 3, 4]).forward(x, targets: t)
        }
        assertError("cross_entropy: label smoothing 1.5 is outside [0, 1]") {
            try CrossEntropy(labelSmoothing: 1.5).forward(x, targets: t)
        }
        assertError("cross_entropy: label smoothing -0.1 is outside [0, 1]") {
            try CrossEntropy(labelSmoothing: -0.1).backward(x, targets: t)
        }
        assertError("cross_entropy: label smoothing nan is outside [0, 1]") {
            try CrossEntropy(labelSmoothing: .nan).forward(x, targets: t)
        }
        assertError("cross_entropy: input has shape [2, 3, 4], expected [N, C] or [N, C, H, W]") {
            try CrossEntropy().forward(DenseTensor(shape: [2, 3, 4]), targets: [0, 0])
        }
        assertError("cross_entropy: input has shape [6], expected [N, C] or [N, C, H, W]") {
            try CrossEntropy().forward(DenseTensor(shape: [6]), targets: t)
        }
        assertError("cross_entropy: input has shape [6, 0], expected at least one class in dimension 1") {
            try CrossEntropy().forward(DenseTensor(shape: [6, 0]), targets: t)
        }
        assertError("cross_entropy backward: upstream gradient has shape [], expected [6] (the loss of reduction none)") {
            try CrossEntropy(reduction: .none).backward(x, targets: t)
        }
        assertError("cross_entropy backward: upstream gradient has shape [2], expected [] (the loss of reduction mean)") {
            try CrossEntropy().backward(x, targets: t, dLoss: DenseTensor(shape: [2]))
        }
        assertError("cross_entropy backward: upstream gradient has shape [2, 15], expected [2, 3, 5] (the loss of reduction none)") {
            try CrossEntropy(reduction: .none).forwardBackward(DenseTensor(shape: [2, 4, 3, 5]), targets: [Int](repeating: 0, count: 30),
                                                               dLoss: DenseTensor(shape: [2, 15]))
        }
        assertError("softmax: dimension 2 is out of range for input of shape [6, 3]") {
            try Softmax.forward(x, dimension: 2)
        }
    }

    func testScalarUpstreamOfShapeOneIsAccepted() throws {
        let x = try DenseTensor(shape: [2, 3], values: [1, 2, 3, -1, 0, 4])
        let a = try CrossEntropy().backward(x, targets: [2, 0], dLoss: 0.5)
        let b = try CrossEntropy().backward(x, targets: [2, 0], dLoss: DenseTensor(shape: [1], values: [0.5]))
        XCTAssertEqual(a, b)
    }
}
