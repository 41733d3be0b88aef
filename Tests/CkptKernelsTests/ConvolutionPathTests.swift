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
