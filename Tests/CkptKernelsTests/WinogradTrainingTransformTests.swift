@testable import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW); weights are [C_out, C_in, 3, 3].

/// The training step's vectorised F(4×4, 3×3) and F(2×2, 3×3) weight transforms against the ones the eval forward
/// caches: bit for bit, on channel-pair counts that leave every remainder of the eight-pair
/// vectors and are large enough to be dealt to both cores (512×512 as in resnet's layer4).
final class WinogradTrainingTransformTests: XCTestCase {
    /// A 3×3 stride-1 padding-1 layer of `c` channels in and out (ResNet's and SegNet's).
    private func squareLayer(_ c: Int) -> Conv2dGeometry {
        Conv2dGeometry(inputChannels: c, outputChannels: c, kernelSize: 3, padding: 1)
    }

    func testTrainingTransformEqualsTransformBitForBit() throws {
        for (i, (cout, cin)) in [(1, 1), (3, 5), (7, 9), (16, 8), (130, 129), (512, 512)].enumerated() {
            var rng = SplitMix64(seed: 0x9a4 + UInt64(i))
            let weight = try rng.tensor([cout, cin, 3, 3], scale: 1)
            // F(4×4) and F(2×2)
            let g4x4: [Double] = [1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
                                  1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0, 0, 1]
            let g2x2: [Double] = [1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1]
            for g in [g4x4, g2x2] {
                let fast = Winograd.transformedPairs(weight.values, pairs: cout * cin, g: g)
                let reference = Winograd.transformedWeights(weight, g: g)
                XCTAssertEqual(fast.count, g.count * g.count / 9 * cout * cin)
                XCTAssertTrue(fast.elementsEqual(reference) { $0.bitPattern == $1.bitPattern }, "\(cout)×\(cin), α = \(g.count / 3)")
                XCTAssertGreaterThan(fast.reduce(0) { $0 + abs($1) }, 0)
            }
        }
    }

    /// Through the convolution: the same output from either transform, and the output of the 3×3
    /// convolution it stands for.
    func testTrainingTransformConvolvesAsTransform() throws {
        var rng = SplitMix64(seed: 0x9a5)
        let g = Conv2dGeometry(inputChannels: 130, outputChannels: 129, kernelSize: 3, padding: 1)
        let x = try rng.tensor([2, 130, 9, 11], scale: 1)
        let weight = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(9 * 130).squareRoot())
        let fast = try Winograd4x4.forward(x, weights: try Winograd4x4.trainingTransform(weight: weight), bias: nil, geometry: g)
        let cached = try Winograd4x4.forward(x, weights: try Winograd4x4.transform(weight: weight), bias: nil, geometry: g)
        XCTAssertEqual(fast.values, cached.values)
        let fast2 = try Winograd.forward(x, weights: try Winograd.trainingTransform(weight: weight), bias: nil, geometry: g)
        let cached2 = try Winograd.forward(x, weights: try Winograd.transform(weight: weight), bias: nil, geometry: g)
        XCTAssertEqual(fast2.values, cached2.values)
        let ref = ConvolutionReference(g, images: 2, height: 9, width: 11)
        FiniteDifference.checkForward("winograd 4×4, training transform", kernel: fast,
                                      reference: ref.forward(x.doubles, weight.doubles, nil), shape: ref.outputShape, tolerance: 1e-5)
        XCTAssertThrowsError(try Winograd4x4.trainingTransform(weight: try rng.tensor([4, 4, 5, 5], scale: 1)))
    }

    /// Which resnet18 layers a training step at batch 16 runs on F(4×4): layer1, layer2 and layer3
    /// (50176, 12544 and 3136 output pixels), not layer4 (784), nor segnet's 128-channel 16×16
    /// layers at batch 2 (the training goldens' size: 512 pixels).
    func testTrainingStepTakesWinogradFromLayer1() {
        XCTAssertTrue(Winograd4x4.paysForTrainingTransform(squareLayer(64), images: 16, height: 56, width: 56))
        XCTAssertTrue(Winograd4x4.paysForTrainingTransform(squareLayer(128), images: 16, height: 28, width: 28))
        XCTAssertTrue(Winograd4x4.paysForTrainingTransform(squareLayer(256), images: 16, height: 14, width: 14))
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(squareLayer(512), images: 16, height: 7, width: 7))
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(squareLayer(256), images: 8, height: 14, width: 14))
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(squareLayer(512), images: 8, height: 7, width: 7))
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(squareLayer(128), images: 2, height: 16, width: 16))
        let strided = Conv2dGeometry(inputChannels: 256, outputChannels: 256, kernelSize: 3, stride: 2, padding: 1)
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(strided, images: 16, height: 28, width: 28))
    }

    /// A 64-channel layer's training forward takes F(4×4) from 16384 pixels (segnet's 160×160
    /// layers at batch 4, resnet18's layer1 at batch 16), not on the segnet golden's 32×32 planes at
    /// batch 2 nor on 32 channels, and stays within 1e-5 of the exact convolution in Double, as the
    /// 128-channel layers do.
    func testTrainingForwardTakesWinogradFrom64ChannelsOnLargePlanes() throws {
        XCTAssertTrue(Winograd4x4.paysForTrainingTransform(squareLayer(64), images: 4, height: 160, width: 160))
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(squareLayer(64), images: 2, height: 32, width: 32))
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(squareLayer(64), images: 3, height: 64, width: 64))
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(squareLayer(32), images: 16, height: 56, width: 56))
        XCTAssertFalse(Winograd4x4.paysForTrainingTransform(Conv2dGeometry(inputChannels: 64, outputChannels: 64, kernelSize: 3,
                                                                           stride: 2, padding: 1), images: 16, height: 56, width: 56))

        var rng = SplitMix64(seed: 0x9a7)
        let g = squareLayer(64)
        let (n, h, w) = (1, 128, 128)  // 16384 pixels
        XCTAssertTrue(Winograd4x4.paysForTrainingTransform(g, images: n, height: h, width: w))
        let x = try rng.tensor([n, 64, h, w], scale: 1)
        let weight = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(9 * 64).squareRoot())
        let y = try Winograd4x4.forward(x, weights: try Winograd4x4.trainingTransform(weight: weight), bias: nil, geometry: g)
        // every 11th output (a debug build's Double reference of all 1M outputs takes too long)
        let ref = ConvolutionReference(g, images: n, height: h, width: w)
        let (xs, ws) = (x.doubles, weight.doubles)
        let reference = xs.withUnsafeBufferPointer { xp in
            ws.withUnsafeBufferPointer { wp in
                Dictionary(uniqueKeysWithValues: stride(from: 0, to: ref.outputCount, by: 11).map {
                    ($0, ref.output(xp.baseAddress!, wp.baseAddress!, nil, $0))
                })
            }
        }
        FiniteDifference.checkForward("64-channel training forward on F(4×4)", kernel: y, reference: reference,
                                      shape: [n, 64, h, w], tolerance: 1e-5)
    }

    /// The input gradient of a 64-channel stride-1 layer (resnet18's layer1) takes F(4×4), and stays
    /// within 1e-5 of the exact `conv2d(dY, W')` in Double.
    func testInputGradientTakesWinogradFrom64Channels() throws {
        XCTAssertTrue(Winograd4x4.paysForInputGradientTransform(squareLayer(64), images: 16, height: 56, width: 56))
        XCTAssertTrue(Winograd4x4.paysForInputGradientTransform(squareLayer(128), images: 16, height: 28, width: 28))
        XCTAssertFalse(Winograd4x4.paysForInputGradientTransform(squareLayer(32), images: 16, height: 56, width: 56))
        XCTAssertFalse(Winograd4x4.paysForInputGradientTransform(squareLayer(64), images: 4, height: 10, width: 10))
        XCTAssertFalse(Winograd4x4.paysForInputGradientTransform(squareLayer(512), images: 16, height: 7, width: 7))

        var rng = SplitMix64(seed: 0x9a6)
        let g = squareLayer(64)
        let (n, h, w) = (1, 48, 48)  // 2304 pixels
        XCTAssertTrue(Winograd4x4.paysForInputGradientTransform(g, images: n, height: h, width: w))
        let x = try rng.tensor([n, 64, h, w], scale: 1)
        let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / Float(9 * 64).squareRoot())
        let dY = try rng.tensor([n, 64, h, w], scale: 1)
        let needs = GradientNeeds(input: true, weight: false, bias: false)
        let dX = try XCTUnwrap(try Convolution.backward(dY, input: x, weight: wt, geometry: g, needs: needs).dInput)
        // dX = conv2d(dY, W') with W' the turned, transposed weight, padding k − 1 − p = 1
        let ref = ConvolutionReference(g, images: n, height: h, width: w)
        FiniteDifference.checkForward("64-channel dInput on F(4×4)", kernel: dX,
                                      reference: ref.forward(dY.doubles, Convolution.flippedTransposed(wt, groups: 1).doubles, nil),
                                      shape: [n, 64, h, w], tolerance: 1e-5)
    }
}
