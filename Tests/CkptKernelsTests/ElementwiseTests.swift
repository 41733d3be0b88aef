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

final class PoolingEdgeTests: XCTestCase {
    func testMaxPoolPropagatesNaN() throws {
        let x = try DenseTensor(shape: [1, 1, 2, 4], values: [1, .nan, 3, 2, 0, 0, 5, 1])
        let y = try Pooling.maxForward(x, geometry: PoolGeometry(kernelSize: 2))
        XCTAssertTrue(y.values[0].isNaN)
        XCTAssertEqual(y.values[1], 5)
    }

    func testCeilModeOutputLengthMatchesTorch() throws {
        // torch: MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5 → 3 (the window starting in the pad is dropped)
        XCTAssertEqual(try PoolGeometry(kernelSize: 2, stride: 2, padding: 1, ceilMode: true).outputLength(5, operation: "t"), 3)
        XCTAssertEqual(try PoolGeometry(kernelSize: 3, stride: 2, ceilMode: true).outputLength(8, operation: "t"), 4)
        XCTAssertEqual(try PoolGeometry(kernelSize: 3, stride: 2).outputLength(8, operation: "t"), 3)
    }
}

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

final class BatchedConvolutionTests: XCTestCase {
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
