import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

final class ElementwiseTests: XCTestCase {
    func testReLUKeepsNaNAndZeroesNegatives() throws {
        let x = try DenseTensor(shape: [4], values: [-1, 0, 2, .nan])
        let y = Elementwise.relu(x)
        XCTAssertEqual(Array(y.values[0 ..< 3]), [0, 0, 2])
        XCTAssertTrue(y.values[3].isNaN)
    }

    func testAddWithReLUEpilogue() throws {
        let a = try DenseTensor(shape: [1, 3], values: [1, -2, 3])
        let b = try DenseTensor(shape: [1, 3], values: [-2, 1, 1])
        XCTAssertEqual(try Elementwise.add(a, b).values, [-1, -1, 4])
        XCTAssertEqual(try Elementwise.add(a, b, epilogue: .relu).values, [0, 0, 4])
        XCTAssertThrowsError(try Elementwise.add(a, try DenseTensor(shape: [3], values: [1, 2, 3])))
    }

    func testConcatenateChannelsInterleavesPerImage() throws {
        let a = try DenseTensor(shape: [2, 1, 1, 2], values: [1, 2, 3, 4])
        let b = try DenseTensor(shape: [2, 2, 1, 2], values: [5, 6, 7, 8, 9, 10, 11, 12])
        let y = try Elementwise.concatenateChannels([a, b])
        XCTAssertEqual(y.shape, [2, 3, 1, 2])
        XCTAssertEqual(y.values, [1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12])
        XCTAssertThrowsError(try Elementwise.concatenateChannels([a, try DenseTensor(shape: [2, 1, 2, 1], values: [0, 0, 0, 0])]))
    }

    func testFlattenKeepsBatch() throws {
        let x = DenseTensor(shape: [2, 3, 4, 5])
        XCTAssertEqual(try Elementwise.flatten(x).shape, [2, 60])
    }

    func testConvolutionRejectsWrongChannelsNamingBothShapes() throws {
        let g = Conv2dGeometry(inputChannels: 3, outputChannels: 4, kernelSize: 3)
        let x = DenseTensor(shape: [1, 2, 8, 8])
        let w = DenseTensor(shape: g.convolutionWeightShape)
        XCTAssertThrowsError(try Convolution.forward(x, weight: w, bias: nil, geometry: g)) { e in
            XCTAssertEqual("\(e)", "conv2d: input has shape [1, 2, 8, 8], expected [N, 3, H, W]")
        }
    }

    func testFoldedBatchNormEqualsConvThenBatchNorm() throws {
        let g = Conv2dGeometry(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1)
        let x = try KernelGoldenTests.operand([2, 3, 5, 5], 0)
        let w = try KernelGoldenTests.operand(g.convolutionWeightShape, 1, scale: 0.3)
        let b = try KernelGoldenTests.operand([4], 2, scale: 0.1)
        let gamma = try KernelGoldenTests.operand([4], 3), beta = try KernelGoldenTests.operand([4], 4, scale: 0.1)
        let mean = try KernelGoldenTests.operand([4], 5, scale: 0.2), variance = try KernelGoldenTests.operand([4], 6, positive: true)
        let reference = try BatchNormalization.forward(
            try Convolution.forward(x, weight: w, bias: b, geometry: g),
            weight: gamma, bias: beta, runningMean: mean, runningVariance: variance, epilogue: .relu)
        let (scale, shift) = try BatchNormalization.affine(weight: gamma, bias: beta, runningMean: mean, runningVariance: variance)
        let folded = try BatchNormalization.fold(convolutionWeight: w, convolutionBias: b, scale: scale, shift: shift)
        let y = try Convolution.forward(x, weight: folded.weight, bias: folded.bias, geometry: g, epilogue: .relu)
        for (a, e) in zip(y.values, reference.values) { XCTAssertEqual(a, e, accuracy: 1e-5) }
    }
}
