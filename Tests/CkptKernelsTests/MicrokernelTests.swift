import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// ckpt's AVX-512 GEMM kernel against OpenBLAS through every convolution path that uses it:
/// ragged tiles (output channels not a multiple of 8, pixels not a multiple of 48), depths longer
/// than one block, groups, pointwise and strided kernels, images batched per product, bands dealt
/// to threads, and products split by rows.
final class MicrokernelTests: XCTestCase {
    func testConvolutionOnMicrokernelEqualsOpenBLAS() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: everything runs on OpenBLAS")
        defer { Microkernel.isEnabled = true }
        var rng = SplitMix64(seed: 0xa512)
        // (n, c_in, c_out, h, w, kernel, stride, padding, groups)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, Int, Int)] = [
            (1, 3, 5, 9, 11, 3, 1, 1, 1),       // 5 output rows: one partial 8-row panel
            (2, 20, 13, 17, 15, 3, 1, 1, 1),    // depth 180: two blocks; 13 rows; 255 pixels
            (1, 48, 64, 40, 40, 3, 1, 1, 1),    // band-parallel path, depth 432
            (4, 32, 24, 7, 7, 3, 1, 1, 1),      // images batched per product
            (1, 64, 512, 7, 7, 3, 1, 1, 1),     // wide and short: split by rows of panels
            (1, 9, 13, 5, 10, 3, 1, 1, 1),      // 50 pixels: a last panel 2 columns wide
            (1, 5, 11, 3, 17, 3, 1, 1, 1),      // 51 pixels: 3 columns
            (2, 16, 40, 12, 12, 1, 1, 0, 1),    // pointwise
            (1, 128, 260, 14, 14, 1, 1, 0, 1),  // pointwise on a 14×14 plane: split by rows
            (1, 200, 44, 16, 16, 1, 1, 0, 1),   // pointwise, 256 columns split 144 + 112
            (1, 512, 1100, 7, 7, 1, 1, 0, 1),   // pointwise, 1 MiB+ of A per lane: A stationary over 48 + 1 columns
            (1, 1024, 600, 9, 9, 1, 1, 0, 1),   // … over 48 + 33 columns, two depth blocks and more
            (1, 12, 16, 23, 23, 7, 2, 3, 1),    // 7×7 stride 2 (ResNet's stem)
            (1, 3, 16, 70, 70, 7, 2, 3, 1),     // … wide enough for the 16-column stride-2 gather
            (2, 8, 16, 64, 65, 3, 2, 1, 1),     // 3×3 stride 2 over two images
            (2, 16, 24, 10, 10, 3, 2, 1, 4),    // grouped, strided
        ]
        for (n, c, cout, h, w, k, s, p, groups) in cases {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: k, stride: s, padding: p, groups: groups)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(k * k * c / groups).squareRoot())
            let b = try rng.tensor([cout], scale: 0.1)
            Microkernel.isEnabled = false
            let reference = try Convolution.forward(x, weight: wt, bias: b, geometry: g, epilogue: .relu)
            Microkernel.isEnabled = true
            let packed = try XCTUnwrap(Convolution.pack(weight: wt, geometry: g))
            for y in [try Convolution.forward(x, weight: wt, bias: b, geometry: g, epilogue: .relu),
                      try Convolution.forward(x, weight: wt, bias: b, geometry: g, epilogue: .relu, packed: packed)] {
                assertClose(y, reference, within: 2e-5, "case \((n, c, cout, h, w, k, s, p, groups))")
                XCTAssertGreaterThan(y.values.reduce(0) { $0 + abs($1) }, 0)
            }
        }
    }

    /// Stride-1 convolutions whose padding adds little read the im2col matrix in place from a
    /// zero-padded copy of the input (`readsPaddedInput`): against OpenBLAS's unfold-and-multiply on
    /// ragged shapes (output channels not a multiple of 8, last panels read in place or copied),
    /// depths over one block, batches whose padded planes run into each other, dilation, 5×5
    /// kernels, no padding, groups; with and without bias and ReLU.
    func testShiftedInputConvolutionEqualsOpenBLAS() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: everything runs on OpenBLAS")
        defer { Microkernel.isEnabled = true }
        var rng = SplitMix64(seed: 0x5417)
        // (n, c_in, c_out, h, w, kernel, padding, dilation, groups)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, Int, Int)] = [
            (1, 3, 5, 20, 18, 3, 1, 1, 1),      // depth 27, 5 output rows, 400 columns: a ragged last panel
            (2, 20, 13, 24, 40, 3, 1, 1, 1),    // depth 180: two blocks; two images' padded planes
            (1, 16, 24, 56, 56, 3, 1, 1, 1),    // ResNet layer1's plane
            (1, 4, 9, 30, 33, 3, 2, 2, 1),      // dilation 2
            (1, 6, 10, 40, 44, 5, 2, 1, 1),     // 5×5
            (1, 7, 11, 30, 30, 3, 0, 1, 1),     // no padding
            (2, 16, 24, 20, 30, 3, 1, 1, 4),    // groups
            (3, 8, 40, 32, 32, 3, 1, 1, 1),     // three images, 40 rows
            (1, 24, 20, 7, 7, 3, 1, 1, 1),      // one 7×7 plane: 55 columns, a last panel of 7 copied
        ]
        for (n, c, cout, h, w, k, p, d, groups) in cases {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: k, padding: p, dilation: d, groups: groups)
            XCTAssertTrue(Convolution.readsPaddedInput(g, images: n, height: h, width: w), "case \((n, c, cout, h, w, k, p, d, groups))")
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(k * k * c / groups).squareRoot())
            let b = try rng.tensor([cout], scale: 0.1)
            for (bias, epilogue) in [(b, Convolution.Epilogue.relu), (nil, .none)] {
                Microkernel.isEnabled = false
                let reference = try Convolution.forward(x, weight: wt, bias: bias, geometry: g, epilogue: epilogue)
                Microkernel.isEnabled = true
                let y = try Convolution.forward(x, weight: wt, bias: bias, geometry: g, epilogue: epilogue)
                assertClose(y, reference, within: 2e-5, "case \((n, c, cout, h, w, k, p, d, groups))")
                XCTAssertGreaterThan(y.values.reduce(0) { $0 + abs($1) }, 0)
            }
        }
        // batches of small planes, where the padding adds a third or more, and padding past the
        // kernel keep unfolding (strided layers: ShiftedConvolutionTests)
        let layer4 = Conv2dGeometry(inputChannels: 512, outputChannels: 512, kernelSize: 3, padding: 1)
        XCTAssertFalse(Convolution.readsPaddedInput(layer4, images: 8, height: 7, width: 7))
        let wide = Conv2dGeometry(inputChannels: 8, outputChannels: 8, kernelSize: 3, padding: 3)
        XCTAssertFalse(Convolution.readsPaddedInput(wide, images: 1, height: 64, width: 64))
    }

    /// Transposed convolutions whose kernel equals the stride take the scatter path (weights read in
    /// place as the transposed GEMM operand, no col2im): against the Double reference and the
    /// OpenBLAS + col2im path, on ragged shapes.
    func testScatterTransposedConvolutionEqualsReference() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: everything runs on OpenBLAS")
        defer { Microkernel.isEnabled = true }
        var rng = SplitMix64(seed: 0x7c0)
        typealias G = Conv2dGeometry
        // (n, h, w, geometry, bias)
        let cases: [(Int, Int, Int, G, Bool)] = [
            (1, 5, 7, G(inputChannels: 3, outputChannels: 5, kernelSize: 2, stride: 2), true),    // 20 rows: a partial panel
            (3, 7, 9, G(inputChannels: 20, outputChannels: 6, kernelSize: 2, stride: 2), true),   // pixels across images and panels
            (2, 4, 5, G(inputChannels: 170, outputChannels: 3, kernelSize: 2, stride: 2), false), // depth 170: two blocks
            (1, 3, 4, G(inputChannels: 64, outputChannels: 200, kernelSize: 2, stride: 2), true), // 800 rows split over the cores
            (2, 3, 5, G(inputChannels: 8, outputChannels: 6, kernelSize: (3, 2), stride: (3, 2), groups: 2), true),
            (1, 6, 6, G(inputChannels: 5, outputChannels: 7, kernelSize: 3, stride: 3), true),    // odd taps: rows of a pixel split by panels
            (2, 17, 19, G(inputChannels: 16, outputChannels: 16, kernelSize: 2, stride: 2), true), // many chunks
        ]
        for (n, h, w, g, bias) in cases {
            let ref = TransposedConvolutionReference(g, images: n, height: h, width: w)
            let x = try rng.tensor(ref.inputShape, scale: 1)
            let wt = try rng.tensor(g.transposedWeightShape, scale: 1 / Float(g.inputChannels / g.groups).squareRoot())
            let b = bias ? try rng.tensor([g.outputChannels], scale: 0.1) : nil
            let y = try TransposedConvolution.forward(x, weight: wt, bias: b, geometry: g)
            FiniteDifference.checkForward("scatter conv_transpose2d \(g)", kernel: y,
                                          reference: ref.forward(x.doubles, wt.doubles, b?.doubles), shape: ref.outputShape)
            Microkernel.isEnabled = false
            let blas = try TransposedConvolution.forward(x, weight: wt, bias: b, geometry: g)
            Microkernel.isEnabled = true
            assertClose(y, blas, within: 2e-5, "\(g)")
            XCTAssertTrue(y.values.allSatisfy(\.isFinite))
        }
    }

    func testWinogradOnMicrokernelEqualsOpenBLAS() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: everything runs on OpenBLAS")
        defer { Microkernel.isEnabled = true }
        var rng = SplitMix64(seed: 0x4a4)
        for (n, c, cout, h, w, p) in [(2, 136, 132, 14, 13, 1), (1, 128, 200, 9, 30, 1), (3, 40, 36, 17, 11, 0), (1, 64, 64, 56, 56, 1)] {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: 3, padding: p)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(9 * c).squareRoot())
            let b = try rng.tensor([cout], scale: 0.1)
            Microkernel.isEnabled = false
            let reference = try Convolution.forward(x, weight: wt, bias: b, geometry: g, epilogue: .relu)
            let reference4 = try Winograd4x4.forward(x, weights: try Winograd4x4.transform(weight: wt), bias: b, geometry: g, epilogue: .relu)
            Microkernel.isEnabled = true
            let y4 = try Winograd4x4.forward(x, weights: try Winograd4x4.transform(weight: wt), bias: b, geometry: g, epilogue: .relu)
            let direct = try Convolution.forward(x, weight: wt, bias: b, geometry: g, epilogue: .relu)
            for (y, r, name) in [(y4, reference4, "F(4x4)"), (direct, reference, "implicit GEMM")] {
                assertClose(y, r, within: 2e-5, "\(name) case \((n, c, cout, h, w, p))")
            }
        }
    }

    /// F(2×2, 3×3) on the microkernel (`WinogradDriver`, bands of tile rows numbered through the
    /// batch, split over images) against F(2×2) on OpenBLAS and the im2col reference, on ragged
    /// shapes: odd planes (a last tile half outside), channels not a multiple of 8, bands that
    /// start inside an image, no padding; and where it replaces F(4×4).
    func testWinograd2x2OnMicrokernelEqualsOpenBLAS() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: everything runs on OpenBLAS")
        defer { Microkernel.isEnabled = true }
        var rng = SplitMix64(seed: 0x2f2)
        for (n, c, cout, h, w, p) in [(1, 256, 256, 14, 14, 1), (1, 136, 132, 13, 11, 1), (3, 40, 36, 17, 11, 0),
                                      (2, 130, 129, 9, 30, 1), (5, 24, 16, 6, 7, 1), (1, 260, 264, 13, 13, 1),
                                      (1, 512, 512, 14, 14, 1)] {  // 1 MiB per transformed matrix: A stationary
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: 3, padding: p)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(9 * c).squareRoot())
            let b = try rng.tensor([cout], scale: 0.1)
            for (bias, epilogue) in [(b, Convolution.Epilogue.relu), (nil, .none)] {
                Microkernel.isEnabled = false
                let reference = try Convolution.forward(x, weight: wt, bias: bias, geometry: g, epilogue: epilogue)
                let openBLAS = try Winograd.forward(x, weights: try Winograd.transform(weight: wt), bias: bias, geometry: g,
                                                    epilogue: epilogue)
                Microkernel.isEnabled = true
                let y = try Winograd.forward(x, weights: try Winograd.transform(weight: wt), bias: bias, geometry: g,
                                             epilogue: epilogue)
                for (r, name) in [(reference, "im2col"), (openBLAS, "F(2x2) on OpenBLAS")] {
                    assertClose(y, r, within: 2e-5, "against \(name), case \((n, c, cout, h, w, p))")
                }
                XCTAssertGreaterThan(y.values.reduce(0) { $0 + abs($1) }, 0)
            }
        }
        // ResNet's layer4 at batch 1 and 2 (4 and 8 F(4×4) tiles) takes F(2×2); at batch 3 (12 tiles),
        // layer3 at batch 1 (16 tiles) and 8, and layer2 (49 tiles), F(4×4)
        let layer4 = Conv2dGeometry(inputChannels: 512, outputChannels: 512, kernelSize: 3, padding: 1)
        XCTAssertTrue(Winograd.isFasterOnMicrokernel(layer4, images: 1, height: 7, width: 7))
        XCTAssertTrue(Winograd.isFasterOnMicrokernel(layer4, images: 2, height: 7, width: 7))
        XCTAssertFalse(Winograd4x4.isFaster(layer4, images: 2, height: 7, width: 7))
        XCTAssertFalse(Winograd.isFasterOnMicrokernel(layer4, images: 3, height: 7, width: 7))
        XCTAssertTrue(Winograd4x4.isFaster(layer4, images: 3, height: 7, width: 7))
        let layer3 = Conv2dGeometry(inputChannels: 256, outputChannels: 256, kernelSize: 3, padding: 1)
        XCTAssertFalse(Winograd.isFasterOnMicrokernel(layer3, images: 1, height: 14, width: 14))
        XCTAssertTrue(Winograd4x4.isFaster(layer3, images: 1, height: 14, width: 14))
        XCTAssertTrue(Winograd4x4.isFaster(layer3, images: 8, height: 14, width: 14))
        let layer2 = Conv2dGeometry(inputChannels: 128, outputChannels: 128, kernelSize: 3, padding: 1)
        XCTAssertTrue(Winograd4x4.isFaster(layer2, images: 1, height: 28, width: 28))
        XCTAssertFalse(Winograd.isFasterOnMicrokernel(layer2, images: 1, height: 28, width: 28))
        XCTAssertFalse(Winograd.isFasterOnMicrokernel(layer3, images: 8, height: 14, width: 14))
        // 25 tiles (20×20) keep F(4×4), and so do 128 channels even with few tiles
        let segnet = Conv2dGeometry(inputChannels: 512, outputChannels: 512, kernelSize: 3, padding: 1)
        XCTAssertTrue(Winograd4x4.isFaster(segnet, images: 1, height: 20, width: 20))
        XCTAssertFalse(Winograd.isFasterOnMicrokernel(segnet, images: 1, height: 20, width: 20))
        XCTAssertTrue(Winograd.isFasterOnMicrokernel(segnet, images: 1, height: 10, width: 10))
        XCTAssertTrue(Winograd4x4.isFaster(layer2, images: 1, height: 10, width: 10))
    }

    /// `dWeight` on the microkernel (dY packed as `A`, the unfold transposed into `B`) against
    /// OpenBLAS's unfold-and-multiply: slices of the unfold (more than 384 rows), superchunks of
    /// pixels (more than one 1 MiB packing of dY), pixel blocks spanning images, the shifted-plane
    /// unfold (stride 1, planes of a multiple of 16 pixels, narrower than 16 too), 16-row groups of
    /// dY, groups and strides; under 1, 2 and 3 threads (split by columns of dW or by pixels).
    func testWeightGradientOnMicrokernelEqualsOpenBLAS() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: everything runs on OpenBLAS")
        defer { Microkernel.isEnabled = true }
        let savedThreads = Gemm.threadCount
        defer { Gemm.setThreadCount(savedThreads) }
        var rng = SplitMix64(seed: 0xd3)
        // (n, c_in, c_out, h, w, kernel, stride, padding, groups)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, Int, Int)] = [
            (3, 48, 20, 8, 8, 3, 1, 1, 1),      // shifted planes, 432 rows: two slices; 20 rows of dY
            (2, 8, 264, 24, 24, 3, 1, 1, 1),    // 1152 pixels: two superchunks of dY
            (3, 5, 6, 4, 8, 5, 1, 2, 1),        // shifted planes narrower than 16 pixels
            (4, 16, 32, 7, 7, 3, 1, 1, 1),      // 49-pixel planes: blocks span images on the general unfold
            (2, 12, 16, 23, 23, 7, 2, 3, 1),    // 7×7 stride 2
            (2, 16, 24, 10, 10, 3, 2, 1, 4),    // grouped, strided
            (2, 40, 24, 8, 8, 1, 1, 0, 1),      // pointwise on shifted planes
            (3, 3, 64, 16, 16, 3, 1, 1, 1),     // 27 rows: split by pixels, partial dW per lane
        ]
        for (n, c, cout, h, w, k, s, p, groups) in cases {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: k, stride: s, padding: p, groups: groups)
            let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 0.1)
            let dY = try rng.tensor([n, cout, oh, ow], scale: 1)
            let needs = GradientNeeds(input: false, weight: true, bias: false)
            Microkernel.isEnabled = false
            let reference = try XCTUnwrap(try Convolution.backward(dY, input: x, weight: wt, geometry: g, needs: needs).dWeight)
            Microkernel.isEnabled = true
            let scale = reference.values.reduce(0) { max($0, abs($1)) }
            for threads in 1 ... 3 {
                Gemm.setThreadCount(threads)
                let dW = try XCTUnwrap(try Convolution.backward(dY, input: x, weight: wt, geometry: g, needs: needs).dWeight)
                assertClose(dW, reference, within: 2e-6 * scale, "case \((n, c, cout, h, w, k, s, p, groups)), \(threads) threads")
            }
        }
    }
}

/// Same shape, and every element of `y` within `tolerance` of `reference`'s.
private func assertClose(_ y: DenseTensor, _ reference: DenseTensor, within tolerance: Float, _ message: @autoclosure () -> String,
                         file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(y.shape, reference.shape, message(), file: file, line: line)
    var worst: Float = 0
    for (a, e) in zip(y.values, reference.values) { worst = max(worst, abs(a - e)) }
    XCTAssertLessThanOrEqual(worst, tolerance, message(), file: file, line: line)
}
