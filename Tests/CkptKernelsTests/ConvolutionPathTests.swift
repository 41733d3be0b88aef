import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// The fast convolution paths (Winograd, images batched per GEMM) agree with the reference path.
final class WinogradTests: XCTestCase {
    func testWinogradEqualsIm2col() throws {
        for (n, c, cout, h, w, p) in [(1, 3, 4, 5, 7, 1), (2, 8, 5, 6, 6, 1), (1, 4, 4, 9, 4, 0), (1, 2, 3, 3, 3, 2)] {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: 3, padding: p)
            let x = try KernelGoldenTests.operand([n, c, h, w], 0)
            let wt = try KernelGoldenTests.operand(g.convolutionWeightShape, 1, scale: 0.5)
            let b = try KernelGoldenTests.operand([cout], 2, scale: 0.1)
            for epilogue in [Convolution.Epilogue.none, .relu] {
                let reference = try Convolution.forward(x, weight: wt, bias: b, geometry: g, epilogue: epilogue)
                let y = try Winograd.forward(x, weights: try Winograd.transform(weight: wt), bias: b, geometry: g, epilogue: epilogue)
                XCTAssertEqual(y.shape, reference.shape)
                for (a, e) in zip(y.values, reference.values) { XCTAssertEqual(a, e, accuracy: 2e-5) }
            }
        }
    }
}

/// F(4×4, 3×3) against the direct im2col path on random data: ragged edges (planes not a multiple
/// of 4), padding 0–2, several images sharing one band, wide channel counts.
final class Winograd4x4Tests: XCTestCase {
    func testWinograd4x4EqualsIm2col() throws {
        // inputs uniform in ±1 and weights scaled by 1/sqrt(fan_in) keep outputs O(1)
        let atol: Float = 2e-5, rtol: Float = 1e-4
        var rng = SplitMix64(seed: 0x5eed)
        for (n, c, cout, h, w, p) in [(1, 3, 4, 5, 7, 1), (2, 8, 5, 6, 6, 1), (1, 4, 4, 9, 4, 0), (1, 2, 3, 3, 3, 2),
                                      (3, 16, 8, 7, 7, 1), (1, 64, 64, 30, 29, 1), (2, 128, 64, 14, 14, 1)] {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: 3, padding: p)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(9 * c).squareRoot())
            let b = try rng.tensor([cout], scale: 0.1)
            for epilogue in [Convolution.Epilogue.none, .relu] {
                let reference = try Convolution.forward(x, weight: wt, bias: b, geometry: g, epilogue: epilogue)
                let y = try Winograd4x4.forward(x, weights: try Winograd4x4.transform(weight: wt), bias: b,
                                                geometry: g, epilogue: epilogue)
                XCTAssertEqual(y.shape, reference.shape)
                var worst: Float = 0
                for (a, e) in zip(y.values, reference.values) {
                    worst = max(worst, abs(a - e) - (atol + rtol * abs(e)))
                }
                XCTAssertLessThanOrEqual(worst, 0, "n=\(n) c=\(c)→\(cout) \(h)×\(w) p=\(p): |Δ| exceeds atol + rtol·|y| by \(worst)")
            }
        }
    }
}

final class BatchedConvolutionTests: XCTestCase {
    /// Large planes are dealt out to the cores band by band with single-threaded GEMMs; the
    /// result must equal the one-thread path (same GEMM shapes per band up to rounding).
    func testBandParallelPathEqualsSingleThreaded() throws {
        for g in [Conv2dGeometry(inputChannels: 6, outputChannels: 8, kernelSize: 3, padding: 1, groups: 2),
                  Conv2dGeometry(inputChannels: 5, outputChannels: 7, kernelSize: 1),
                  Conv2dGeometry(inputChannels: 4, outputChannels: 3, kernelSize: 5, stride: 2, padding: 2)] {
            let x = try KernelGoldenTests.operand([2, g.inputChannels, 47, 45], 0)
            let w = try KernelGoldenTests.operand(g.convolutionWeightShape, 1, scale: 0.5)
            let b = try KernelGoldenTests.operand([g.outputChannels], 2, scale: 0.1)
            let threads = Gemm.threadCount
            Gemm.setThreadCount(1)
            let single = try Convolution.forward(x, weight: w, bias: b, geometry: g, epilogue: .relu)
            Gemm.setThreadCount(2)
            let banded = try Convolution.forward(x, weight: w, bias: b, geometry: g, epilogue: .relu)
            Gemm.setThreadCount(threads)
            XCTAssertEqual(banded.shape, single.shape)
            for (a, e) in zip(banded.values, single.values) { XCTAssertEqual(a, e, accuracy: 1e-5 + 1e-5 * abs(e)) }
        }
    }

    /// Small planes take the path that unfolds several images into one GEMM: each image must
    /// equal the same image convolved alone.
    func testImageBatchedPathEqualsPerImage() throws {
        for g in [Conv2dGeometry(inputChannels: 4, outputChannels: 6, kernelSize: 3, padding: 1, groups: 2),
                  Conv2dGeometry(inputChannels: 5, outputChannels: 3, kernelSize: 1)] {
            let x = try KernelGoldenTests.operand([3, g.inputChannels, 5, 4], 0)
            let w = try KernelGoldenTests.operand(g.convolutionWeightShape, 1, scale: 0.5)
            let b = try KernelGoldenTests.operand([g.outputChannels], 2, scale: 0.1)
            let y = try Convolution.forward(x, weight: w, bias: b, geometry: g)
            let per = x.count / 3
            for i in 0 ..< 3 {
                let xi = try DenseTensor(shape: [1, g.inputChannels, 5, 4], values: Array(x.values[i * per ..< (i + 1) * per]))
                let yi = try Convolution.forward(xi, weight: w, bias: b, geometry: g)
                let out = yi.count
                XCTAssertEqual(Array(y.values[i * out ..< (i + 1) * out]), yi.values)
            }
        }
    }
}

/// A small seeded generator so random test data is the same on every run.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func nextSigned() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }

    /// A tensor of `shape` with elements uniform in `[-scale, scale)`.
    mutating func tensor(_ shape: [Int], scale: Float) throws -> DenseTensor {
        var values = [Float](repeating: 0, count: shape.reduce(1, *))
        for i in values.indices { values[i] = scale * nextSigned() }
        return try DenseTensor(shape: shape, values: values)
    }
}
