@testable import CkptKernels
import XCTest

// Weights are [C_out, C_in/groups, kH, kW]; packed matrices are the microkernel's 8-row panels per depth block.

/// The training step's packers against the packer the eval forward uses: the transposing one
/// (`Microkernel.packTransposing`) and the Winograd transforms written straight into panels
/// (`WinogradWeightPanels`) must lay down the same floats in the same places, bit for bit, over
/// row counts that leave every remainder of the 8- and 16-row panels, depths of one and several
/// blocks with every remainder of the 16-column transposes, and groups.
final class TrainingWeightPackingTests: XCTestCase {
    func testTransposingPackerEqualsPackerBitForBit() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: nothing is packed")
        var rng = SplitMix64(seed: 0x7a11)
        // (groups, rows, columns)
        let cases: [(Int, Int, Int)] = [
            (1, 1, 1), (1, 5, 15), (1, 8, 16), (1, 13, 17), (1, 16, 160), (1, 17, 161), (1, 64, 576),
            (1, 130, 1153), (1, 512, 4608), (3, 24, 48), (2, 9, 27), (36, 33, 130),
        ]
        for (groups, rows, columns) in cases {
            let values = try rng.tensor([groups * rows * columns], scale: 1).values
            let reference = try XCTUnwrap(Microkernel.pack(values, groups: groups, rows: rows, columns: columns))
            let fast = try XCTUnwrap(Microkernel.packTransposing(values, groups: groups, rows: rows, columns: columns))
            XCTAssertEqual(fast.rows, rows)
            XCTAssertEqual(fast.columns, columns)
            let (a, b) = (fast.packedFloats, reference.packedFloats)
            XCTAssertEqual(a.count, groups)
            for g in 0 ..< groups {
                XCTAssertTrue(a[g].elementsEqual(b[g]) { $0.bitPattern == $1.bitPattern }, "\(groups)×\(rows)×\(columns), group \(g)")
            }
        }
    }

    /// Through a convolution: the forward with the training packer's weight gives the same output.
    func testConvolutionWithTrainingPackEqualsForward() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: nothing is packed")
        var rng = SplitMix64(seed: 0x7a12)
        let g = Conv2dGeometry(inputChannels: 24, outputChannels: 21, kernelSize: 3, stride: 2, padding: 1, groups: 3)
        let x = try rng.tensor([2, 24, 11, 9], scale: 1)
        let weight = try rng.tensor(g.convolutionWeightShape, scale: 0.2)
        let reference = try Convolution.forward(x, weight: weight, bias: nil, geometry: g)
        let fast = try Convolution.forward(x, weight: weight, bias: nil, geometry: g,
                                           packed: Convolution.packForTraining(weight: weight, geometry: g))
        XCTAssertEqual(fast.values, reference.values)
        XCTAssertGreaterThan(fast.values.reduce(0) { $0 + abs($1) }, 0)
    }

    /// The training transforms' packed matrices against the eval transform's values packed by the
    /// eval packer, for F(4×4) and F(2×2), and F(4×4) of the input gradient's turned, transposed
    /// weight made from the weight itself; 512×512 as in resnet's layer4 (32 jobs over the cores).
    func testWinogradTransformWrittenAsPanelsEqualsPackedTransform() throws {
        try XCTSkipUnless(Microkernel.isSupported, "this CPU has no AVX-512F: the transform is not packed")
        for (i, (cout, cin)) in [(1, 1), (3, 5), (7, 9), (16, 8), (17, 33), (130, 129), (512, 512)].enumerated() {
            var rng = SplitMix64(seed: 0x7a13 + UInt64(i))
            let weight = try rng.tensor([cout, cin, 3, 3], scale: 1)
            let u4 = Winograd.transformedWeights(weight, g: [1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
                                                             1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0, 0, 1])
            let u2 = Winograd.transformedWeights(weight, g: [1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1])
            // the input gradient's weight, turned and transposed, as the eval path would transform it
            let flipped = Convolution.flippedTransposed(weight, groups: 1)
            let u4Flipped = Winograd.transformedWeights(flipped, g: [1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6,
                                                                     -1.0 / 6, 1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6,
                                                                     0, 0, 1])
            let fast4 = try XCTUnwrap(try Winograd4x4.trainingTransform(weight: weight).packed)
            let fast2 = try XCTUnwrap(try Winograd.trainingTransform(weight: weight).packed)
            let fast4Flipped = try XCTUnwrap(try Winograd4x4.trainingTransform(flipping: weight).packed)
            XCTAssertEqual(fast4Flipped.rows, cin)
            XCTAssertEqual(fast4Flipped.columns, cout)
            for (fast, u, points, rows, columns) in [(fast4, u4, 36, cout, cin), (fast2, u2, 16, cout, cin),
                                                     (fast4Flipped, u4Flipped, 36, cin, cout)] {
                let reference = try XCTUnwrap(Microkernel.pack(u, groups: points, rows: rows, columns: columns))
                let (a, b) = (fast.packedFloats, reference.packedFloats)
                XCTAssertEqual(a.count, points)
                XCTAssertTrue(zip(a, b).allSatisfy { $0.elementsEqual($1) { $0.bitPattern == $1.bitPattern } },
                              "\(cout)×\(cin), \(points) points, \(rows) rows")
                XCTAssertGreaterThan(a.joined().reduce(0) { $0 + abs($1) }, 0)
            }
        }
    }
}
