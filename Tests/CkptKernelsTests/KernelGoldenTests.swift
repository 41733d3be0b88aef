import CkptKernels
import Foundation
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// Every case of fixtures/zoo/kernels.json (written by generate_zoo.py from torch): operands
/// regenerated from the formula, output compared element by element.
final class KernelGoldenTests: XCTestCase {
    struct Case {
        var op: String
        var name: String
        var params: [String: Any]
        var operands: [[Int]]
        var positive: Set<Int>
        var expectedShape: [Int]
        var expected: [Float]
    }

    static func fixtureURL(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/zoo/\(name)")
    }

    func loadCases() throws -> [Case] {
        let data = try Data(contentsOf: Self.fixtureURL("kernels.json"))
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try XCTUnwrap(root["cases"] as? [[String: Any]])
        return try cases.map { c in
            let out = try XCTUnwrap(c["output"] as? [String: Any])
            return Case(op: try XCTUnwrap(c["op"] as? String), name: try XCTUnwrap(c["name"] as? String),
                        params: c["params"] as? [String: Any] ?? [:],
                        operands: try XCTUnwrap(c["operands"] as? [[Int]]),
                        positive: Set(c["positive"] as? [Int] ?? []),
                        expectedShape: try XCTUnwrap(out["shape"] as? [Int]),
                        expected: try XCTUnwrap(out["values"] as? [Double]).map { Float($0) })
        }
    }

    /// Operand `k`: `scale·sin(0.37·i + 0.11·k)`, or `0.5 + 0.25·(1 + sin)` when positive.
    static func operand(_ shape: [Int], _ k: Int, scale: Double = 1, positive: Bool = false) throws -> DenseTensor {
        let n = shape.reduce(1, *)
        let v = (0 ..< n).map { i -> Float in
            let s = sin(0.37 * Double(i) + 0.11 * Double(k))
            return Float(positive ? 0.5 + 0.25 * (1 + s) : scale * s)
        }
        return try DenseTensor(shape: shape, values: v)
    }

    func run(_ c: Case) throws -> DenseTensor {
        func p(_ k: String) -> Int { c.params[k] as? Int ?? 0 }
        let ops = c.operands
        switch c.op {
        case "conv2d", "conv_transpose2d":
            let g = Conv2dGeometry(inputChannels: p("in_channels"), outputChannels: p("out_channels"),
                                   kernelSize: p("kernel_size"), stride: p("stride"), padding: p("padding"),
                                   dilation: p("dilation"), groups: p("groups"), outputPadding: p("output_padding"))
            let x = try Self.operand(ops[0], 0), w = try Self.operand(ops[1], 1, scale: 0.5)
            let b = ops.count > 2 ? try Self.operand(ops[2], 2, scale: 0.1) : nil
            return c.op == "conv2d"
                ? try Convolution.forward(x, weight: w, bias: b, geometry: g)
                : try TransposedConvolution.forward(x, weight: w, bias: b, geometry: g)
        case "batch_norm":
            return try BatchNormalization.forward(
                try Self.operand(ops[0], 0), weight: try Self.operand(ops[1], 1), bias: try Self.operand(ops[2], 2, scale: 0.1),
                runningMean: try Self.operand(ops[3], 3, scale: 0.2), runningVariance: try Self.operand(ops[4], 4, positive: true))
        case "max_pool2d", "avg_pool2d":
            let g = PoolGeometry(kernelSize: p("kernel_size"), stride: p("stride"), padding: p("padding"),
                                 dilation: max(p("dilation"), 1), ceilMode: c.params["ceil_mode"] as? Bool ?? false)
            let x = try Self.operand(ops[0], 0)
            return c.op == "max_pool2d" ? try Pooling.maxForward(x, geometry: g) : try Pooling.averageForward(x, geometry: g)
        case "adaptive_avg_pool2d":
            return try Pooling.adaptiveAverageForward(try Self.operand(ops[0], 0), outputHeight: p("output_height"),
                                                      outputWidth: p("output_width"))
        case "linear":
            return try FullyConnected.forward(try Self.operand(ops[0], 0), weight: try Self.operand(ops[1], 1, scale: 0.5),
                                              bias: try Self.operand(ops[2], 2, scale: 0.1))
        default:
            throw XCTSkip("no runner for \(c.op)")
        }
    }

    func testEveryCaseMatchesTorch() throws {
        let cases = try loadCases()
        XCTAssertGreaterThan(cases.count, 15)
        // float32 sums of at most a few hundred terms of magnitude ≤ 1
        let atol: Float = 2e-5, rtol: Float = 1e-5
        for c in cases {
            let y = try run(c)
            XCTAssertEqual(y.shape, c.expectedShape, "\(c.op) \(c.name): shape")
            guard y.shape == c.expectedShape else { continue }
            var worst: Float = 0
            for (a, e) in zip(y.values, c.expected) {
                worst = max(worst, abs(a - e) - rtol * abs(e))
            }
            XCTAssertLessThanOrEqual(worst, atol, "\(c.op) \(c.name): max excess error \(worst)")
        }
    }
}
