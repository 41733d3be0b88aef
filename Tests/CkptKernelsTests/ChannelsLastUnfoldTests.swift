import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW); conv2d weights are [C_out, C_in/groups, kH, kW].

/// The weight gradient with its unfold gathered from a padded channels-last input
/// (`ChannelsLastUnfold`): bit for bit the transposed-unfold path's result (same products, same
/// order, only the matrix's columns permuted) over padding, strides, dilation, groups, ragged
/// channel counts (runs that are not multiples of 16, panels that cross taps), pixel blocks that
/// span images, planes of any size, and 1 to 3 threads; and, at a size of resnet's, against the
/// exact sum in Double.
final class ChannelsLastUnfoldTests: XCTestCase {
    func weightGradient(_ dY: DenseTensor, _ x: DenseTensor, _ wt: DenseTensor, _ g: Conv2dGeometry,
                        channelsLast: Bool) throws -> DenseTensor {
        ChannelsLastUnfold.isEnabled = channelsLast
        defer { ChannelsLastUnfold.isEnabled = true }
        let needs = GradientNeeds(input: false, weight: true, bias: false)
        return try XCTUnwrap(try Convolution.backward(dY, input: x, weight: wt, geometry: g, needs: needs).dWeight)
    }

    func testGatheredWeightGradientEqualsTransposedUnfoldBitForBit() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: the gather is not used")
        let savedThreads = Gemm.threadCount
        defer { Gemm.setThreadCount(savedThreads) }
        var rng = SplitMix64(seed: 0x5e7)
        // (n, c_in, c_out, h, w, kernel, stride, padding, dilation, groups)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, Int, Int, Int)] = [
            (3, 64, 24, 8, 8, 3, 1, 1, 1, 1),      // 576 rows: two slices of 384, panels crossing taps
            (4, 16, 32, 7, 7, 3, 1, 1, 1, 1),      // 49-pixel planes: blocks span images
            (2, 21, 10, 9, 11, 3, 1, 1, 1, 1),     // 21 channels: runs of 16 + 5, ragged everything
            (2, 32, 16, 13, 13, 3, 2, 1, 1, 1),    // strided
            (2, 24, 12, 12, 10, 3, 1, 2, 2, 1),    // dilated
            (2, 48, 24, 10, 10, 3, 1, 1, 1, 3),    // grouped: 16 channels a group
            (2, 40, 24, 8, 8, 1, 1, 0, 1, 1),      // pointwise
            (2, 32, 20, 12, 12, 1, 2, 0, 1, 1),    // pointwise strided (resnet's downsample)
            (2, 16, 8, 11, 9, 5, 1, 2, 1, 1),      // 5×5, padding 2
            (2, 16, 8, 10, 10, 2, 2, 0, 1, 1),     // no padding, kernel 2 stride 2
            (4, 16, 8, 16, 16, 3, 1, 1, 1, 1),     // 1024 pixels, depth 144: split by pixels, the lanes' sums added as the columns are reordered
        ]
        for (n, c, cout, h, w, k, s, p, d, groups) in cases {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: k, stride: s, padding: p,
                                   dilation: d, groups: groups)
            let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 0.1)
            let dY = try rng.tensor([n, cout, oh, ow], scale: 1)
            for threads in 1 ... 3 {
                Gemm.setThreadCount(threads)
                let reference = try weightGradient(dY, x, wt, g, channelsLast: false)
                let dW = try weightGradient(dY, x, wt, g, channelsLast: true)
                XCTAssertEqual(dW.shape, g.convolutionWeightShape)
                XCTAssertEqual(dW.values, reference.values, "case \((n, c, cout, h, w, k, s, p, d, groups)), \(threads) threads")
            }
        }
    }

    /// resnet18's layer3 3×3 convolution (256 channels, 14×14 planes) at batch 2, every element of
    /// `dWeight` against the sum in Double.
    func testGatheredWeightGradientAtResNetSizeMatchesDouble() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: the gather is not used")
        var rng = SplitMix64(seed: 0x5e8)
        let (n, c, cout, h, w) = (2, 256, 64, 14, 14)
        let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: 3, stride: 1, padding: 1)
        let x = try rng.tensor([n, c, h, w], scale: 1)
        let wt = try rng.tensor(g.convolutionWeightShape, scale: 0.1)
        let dY = try rng.tensor([n, cout, h, w], scale: 1)
        let dW = try weightGradient(dY, x, wt, g, channelsLast: true)
        var exact = [Double](repeating: 0, count: dW.count)
        x.values.withUnsafeBufferPointer { xv in
            dY.values.withUnsafeBufferPointer { dv in
                for img in 0 ..< n {
                    for co in 0 ..< cout {
                        for ci in 0 ..< c {
                            for i in 0 ..< 3 {
                                for j in 0 ..< 3 {
                                    var sum = 0.0
                                    for y in max(0, 1 - i) ..< min(h, h + 1 - i) {
                                        let xRow = ((img * c + ci) * h + y + i - 1) * w + j - 1
                                        let dRow = ((img * cout + co) * h + y) * w
                                        for xx in max(0, 1 - j) ..< min(w, w + 1 - j) { sum += Double(xv[xRow + xx]) * Double(dv[dRow + xx]) }
                                    }
                                    exact[((co * c + ci) * 3 + i) * 3 + j] += sum
                                }
                            }
                        }
                    }
                }
            }
        }
        let scale = exact.reduce(0) { max($0, abs($1)) }
        var worst = 0.0
        for (a, e) in zip(dW.values, exact) { worst = max(worst, abs(Double(a) - e)) }
        XCTAssertGreaterThan(scale, 1)
        XCTAssertLessThanOrEqual(worst, 1e-5 * scale)
    }
}
