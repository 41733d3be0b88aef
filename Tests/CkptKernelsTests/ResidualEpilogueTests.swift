import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// A residual fused into a convolution's write-out (`relu(conv(x) + b + r)`, ResNet's block tail)
/// equals the convolution followed by the separate add and ReLU bit for bit (the same additions in
/// the same order), on every path that writes an output: the shifted-input and panel implicit
/// GEMMs, pointwise products in bands or images batched, OpenBLAS's paths, and both Winograd
/// kernels on the microkernel and on OpenBLAS, with ragged tiles and several images.
final class ResidualEpilogueTests: XCTestCase {
    /// (n, c_in, c_out, h, w, kernel, stride, padding)
    static let convolutionCases: [(Int, Int, Int, Int, Int, Int, Int, Int)] = [
        (2, 8, 13, 20, 18, 3, 1, 1),   // shifted input, 13 rows: a partial 8-row panel
        (1, 48, 64, 40, 40, 3, 1, 1),  // shifted, band-parallel without the microkernel
        (2, 8, 16, 19, 21, 3, 2, 1),   // strided: panel unfold
        (2, 16, 40, 47, 45, 1, 1, 0),  // pointwise, large planes: bands
        (3, 5, 7, 5, 4, 1, 1, 0),      // pointwise, small planes: images batched per product
        (3, 6, 9, 5, 4, 3, 1, 1),      // 3×3 small planes of a batch
    ]

    func testConvolutionResidualEqualsSeparateAdd() throws {
        defer { Microkernel.isEnabled = Microkernel.isSupported }
        var rng = SplitMix64(seed: 0x7e51)
        for (n, c, cout, h, w, k, s, p) in Self.convolutionCases {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: k, stride: s, padding: p)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(k * k * c).squareRoot())
            let b = try rng.tensor([cout], scale: 0.1)
            let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
            let r = try rng.tensor([n, cout, oh, ow], scale: 1)
            for kernel in Microkernel.isSupported ? [true, false] : [false] {
                Microkernel.isEnabled = kernel
                let plain = try Convolution.forward(x, weight: wt, bias: b, geometry: g)
                let fused = try Convolution.forward(x, weight: wt, bias: b, geometry: g, epilogue: .relu, residual: r)
                let added = try Convolution.forward(x, weight: wt, bias: b, geometry: g, residual: r)
                try assertSeparate(fused, plain, r, relu: true, "case \((n, c, cout, h, w, k, s, p)), microkernel \(kernel)")
                try assertSeparate(added, plain, r, relu: false, "case \((n, c, cout, h, w, k, s, p)), microkernel \(kernel)")
            }
        }
    }

    func testWinogradResidualEqualsSeparateAdd() throws {
        defer { Microkernel.isEnabled = Microkernel.isSupported }
        var rng = SplitMix64(seed: 0x3a3)
        // (n, c_in, c_out, h, w, padding): ragged tiles, several images, a band per lane
        for (n, c, cout, h, w, p) in [(1, 4, 5, 7, 9, 1), (2, 16, 13, 14, 14, 1), (3, 8, 8, 10, 11, 1), (1, 32, 24, 30, 29, 0)] {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: 3, padding: p)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(9 * c).squareRoot())
            let b = try rng.tensor([cout], scale: 0.1)
            let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
            let r = try rng.tensor([n, cout, oh, ow], scale: 1)
            for kernel in Microkernel.isSupported ? [true, false] : [false] {
                Microkernel.isEnabled = kernel
                let u2 = try Winograd.transform(weight: wt), u4 = try Winograd4x4.transform(weight: wt)
                let label = "case \((n, c, cout, h, w, p)), microkernel \(kernel)"
                try assertSeparate(try Winograd.forward(x, weights: u2, bias: b, geometry: g, epilogue: .relu, residual: r),
                                   try Winograd.forward(x, weights: u2, bias: b, geometry: g), r, relu: true, "F(2×2) " + label)
                try assertSeparate(try Winograd4x4.forward(x, weights: u4, bias: b, geometry: g, epilogue: .relu, residual: r),
                                   try Winograd4x4.forward(x, weights: u4, bias: b, geometry: g), r, relu: true, "F(4×4) " + label)
                try assertSeparate(try Winograd4x4.forward(x, weights: u4, bias: b, geometry: g, residual: r),
                                   try Winograd4x4.forward(x, weights: u4, bias: b, geometry: g), r, relu: false, "F(4×4) " + label)
            }
        }
    }

    func testResidualOfAnotherShapeIsRefused() throws {
        let g = Conv2dGeometry(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1)
        let x = DenseTensor(shape: [1, 2, 5, 5], repeating: 1)
        let wt = DenseTensor(shape: g.convolutionWeightShape, repeating: 0.1)
        let r = DenseTensor(shape: [1, 3, 5, 4], repeating: 1)
        XCTAssertThrowsError(try Convolution.forward(x, weight: wt, bias: nil, geometry: g, residual: r)) { e in
            XCTAssertEqual("\(e)", "conv2d: residual has shape [1, 3, 5, 4], expected [1, 3, 5, 5]")
        }
        XCTAssertThrowsError(try Winograd4x4.forward(x, weights: try Winograd4x4.transform(weight: wt), bias: nil, geometry: g,
                                                     residual: r))
        XCTAssertThrowsError(try Winograd.forward(x, weights: try Winograd.transform(weight: wt), bias: nil, geometry: g,
                                                  residual: r))
    }
}

/// `fused` equals `relu?(plain + residual)` element for element, and the ReLU cut something.
private func assertSeparate(_ fused: DenseTensor, _ plain: DenseTensor, _ residual: DenseTensor, relu: Bool,
                            _ message: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) throws {
    let expected = try Elementwise.add(plain, residual, epilogue: relu ? .relu : .none)
    XCTAssertEqual(fused.shape, expected.shape, message(), file: file, line: line)
    var mismatches = 0
    for (a, e) in zip(fused.values, expected.values) where a != e { mismatches += 1 }
    XCTAssertEqual(mismatches, 0, message(), file: file, line: line)
    if relu {
        XCTAssertTrue(fused.values.contains(0) && fused.values.contains { $0 > 0 }, message(), file: file, line: line)
    } else {
        XCTAssertTrue(fused.values.contains { $0 < 0 }, message(), file: file, line: line)
    }
}
