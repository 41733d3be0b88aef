@testable import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// The implicit GEMM read in place from zero-padded phase planes (`ShiftedLayout`) against the
/// same product on unfolded panels (`forwardPanels`), bit for bit: each output is the same chain
/// of multiply-adds. Strides 2 and 3 over odd and even planes (phases of unequal length), 1×1
/// stride-2 kernels (one phase), ResNet's 7×7 stem, dilation with stride, groups, several images,
/// output channels not a multiple of 8, depths over one block, with and without bias, ReLU and a
/// residual; and stride 1 (one phase: the layout of the stride-1 path) for good measure.
final class ShiftedConvolutionTests: XCTestCase {
    func testShiftedEqualsUnfoldedPanelsBitForBit() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: everything runs on OpenBLAS")
        var rng = SplitMix64(seed: 0x5712)
        // (n, c_in, c_out, h, w, kernel, stride, padding, dilation, groups)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, Int, Int, Int)] = [
            (1, 16, 24, 56, 56, 3, 2, 1, 1, 1),    // ResNet layer2.0's conv1 plane
            (1, 20, 13, 13, 15, 3, 2, 1, 1, 1),    // odd planes: phases of 7 and 6 lines, 13 rows
            (2, 24, 40, 28, 28, 3, 2, 1, 1, 1),    // two images; depth 216: two blocks
            (1, 40, 20, 14, 14, 3, 2, 1, 1, 1),    // layer4.0's 7×7 output: 55 columns, a copied tail
            (1, 3, 16, 70, 70, 7, 2, 3, 1, 1),     // the stem: four phases, shifts −2…1
            (1, 3, 9, 33, 31, 7, 2, 3, 1, 1),      // the stem on odd planes
            (2, 16, 40, 56, 56, 1, 2, 0, 1, 1),    // 1×1 stride 2: one phase, nothing computed in padding
            (1, 12, 11, 9, 11, 1, 2, 0, 1, 1),     // … on odd planes
            (1, 8, 10, 31, 32, 3, 3, 1, 1, 1),     // stride 3: three phases of unequal lengths
            (1, 6, 9, 41, 40, 3, 2, 2, 2, 1),      // dilation 2 with stride 2: one phase per axis
            (2, 16, 24, 30, 30, 3, 2, 1, 1, 4),    // groups
            (1, 8, 12, 20, 18, 3, 1, 1, 1, 1),     // stride 1
        ]
        for (n, c, cout, h, w, k, s, p, d, groups) in cases {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: cout, kernelSize: k, stride: s, padding: p, dilation: d,
                                   groups: groups)
            let label = "case \((n, c, cout, h, w, k, s, p, d, groups))"
            XCTAssertNotNil(ShiftedLayout(g, images: n, height: h, width: w), label)
            let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
            let x = try rng.tensor([n, c, h, w], scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(k * k * c / groups).squareRoot())
            let b = try rng.tensor([cout], scale: 0.1)
            let r = try rng.tensor([n, cout, oh, ow], scale: 1)
            let packed = try XCTUnwrap(Convolution.pack(weight: wt, geometry: g))
            for (bias, relu, residual) in [(b.values, true, r), (nil, false, nil)] as [([Float]?, Bool, DenseTensor?)] {
                var expected = [Float](repeating: .nan, count: n * cout * oh * ow)
                var got = [Float](repeating: .nan, count: n * cout * oh * ow)
                Convolution.withResidual(residual) { res in
                    Convolution.forwardPanels(x, packed: packed, bias: bias, output: &expected, geometry: g, outputSize: (oh, ow),
                                              relu: relu, residual: res)
                    Convolution.forwardShifted(x, packed: packed, bias: bias, output: &got, geometry: g, outputSize: (oh, ow),
                                               relu: relu, residual: res)
                }
                let mismatches = zip(got, expected).filter { $0.bitPattern != $1.bitPattern }.count
                XCTAssertEqual(mismatches, 0, "\(label) bias \(bias != nil)")
                XCTAssertGreaterThan(got.reduce(0) { $0 + abs($1) }, 0, label)
            }
        }
    }

    /// Which strided layers read the padded phase planes: kernels larger than 1×1 whose padding
    /// adds at most 4 % (ResNet's stem and layer2.0's conv1 at batch 1), not its 14×14 and 7×7
    /// outputs, not batches of 8, never a 1×1 kernel.
    func testStridedLayersThatReadThePaddedInput() {
        func geometry(_ c: Int, _ k: Int, _ s: Int, _ p: Int) -> Conv2dGeometry {
            Conv2dGeometry(inputChannels: c, outputChannels: 2 * c, kernelSize: k, stride: s, padding: p)
        }
        XCTAssertTrue(Convolution.readsPaddedInput(geometry(3, 7, 2, 3), images: 1, height: 224, width: 224))
        XCTAssertTrue(Convolution.readsPaddedInput(geometry(64, 3, 2, 1), images: 1, height: 56, width: 56))
        XCTAssertFalse(Convolution.readsPaddedInput(geometry(3, 7, 2, 3), images: 8, height: 224, width: 224))
        XCTAssertFalse(Convolution.readsPaddedInput(geometry(64, 3, 2, 1), images: 8, height: 56, width: 56))
        XCTAssertFalse(Convolution.readsPaddedInput(geometry(128, 3, 2, 1), images: 1, height: 28, width: 28))
        XCTAssertFalse(Convolution.readsPaddedInput(geometry(256, 3, 2, 1), images: 1, height: 14, width: 14))
        XCTAssertFalse(Convolution.readsPaddedInput(geometry(64, 1, 2, 0), images: 1, height: 56, width: 56))
        // padding past the kernel
        XCTAssertFalse(Convolution.readsPaddedInput(geometry(8, 1, 2, 1), images: 1, height: 20, width: 20))
    }
}
