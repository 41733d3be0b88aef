@testable import CkptKernels
import Foundation
import XCTest

// N images, C channels, H rows, W columns (NCHW); conv2d weights are [C_out, C_in/groups, kH, kW].

/// `dInput` of strided convolutions at the sizes resnet's downsampling layers have (`C_out/g` of
/// 128 and more, planes that are not multiples of any tile), against the exact sum in Double:
/// the phase decomposition (one stride-1 convolution of `dY` per phase of the input grid, on the
/// microkernel) must be as accurate as the unfolded OpenBLAS path, not merely pass finite
/// differences (an earlier strided path on the microkernel did, yet drifted over SGD steps).
final class StridedInputGradientTests: XCTestCase {
    /// `dX[n, c, y, x] = Σ W[co, c, i, j]·dY[n, co, oy, ox]` over `y = oy·s − p + i·d` (and `x`), in Double.
    func exactInputGradient(_ dY: DenseTensor, weight: DenseTensor, geometry g: Conv2dGeometry, height h: Int, width w: Int) -> [Double] {
        let n = dY.shape[0], oh = dY.shape[2], ow = dY.shape[3]
        let c = g.inputChannels, cinG = c / g.groups, coutG = g.outputChannels / g.groups
        let (kh, kw) = (g.kernelSize.height, g.kernelSize.width)
        var dx = [Double](repeating: 0, count: n * c * h * w)
        for img in 0 ..< n {
            for co in 0 ..< g.outputChannels {
                let grp = co / coutG
                for oy in 0 ..< oh {
                    for ox in 0 ..< ow {
                        let d = Double(dY.values[((img * g.outputChannels + co) * oh + oy) * ow + ox])
                        for ci in 0 ..< cinG {
                            let plane: Int = (img * c + grp * cinG + ci) * h * w
                            for i in 0 ..< kh {
                                let y = oy * g.stride.height - g.padding.height + i * g.dilation.height
                                guard y >= 0, y < h else { continue }
                                for j in 0 ..< kw {
                                    let x = ox * g.stride.width - g.padding.width + j * g.dilation.width
                                    guard x >= 0, x < w else { continue }
                                    let wIndex: Int = ((co * cinG + ci) * kh + i) * kw + j
                                    let xIndex: Int = plane + y * w + x
                                    dx[xIndex] += Double(weight.values[wIndex]) * d
                                }
                            }
                        }
                    }
                }
            }
        }
        return dx
    }

    /// `max |dX − exact| / max |exact|`.
    func relativeError(_ dX: DenseTensor?, _ exact: [Double]) -> Double {
        guard let dX, dX.count == exact.count else { return .infinity }
        var worst = 0.0, scale = 0.0
        for (k, e) in zip(dX.values, exact) {
            let d = abs(Double(k) - e)
            if d.isNaN { return .infinity }
            worst = max(worst, d)
            scale = max(scale, abs(e))
        }
        return worst / max(scale, .leastNonzeroMagnitude)
    }

    func testLargeStridedInputGradientsMatchDouble() throws {
        typealias G = Conv2dGeometry
        // (name, N, H, W, geometry)
        let cases: [(String, Int, Int, Int, G)] = [
            ("3×3 s2 p1 128→256 14×14 (resnet layer4)", 2, 14, 14, G(inputChannels: 128, outputChannels: 256, kernelSize: 3, stride: 2, padding: 1)),
            ("1×1 s2 128→256 14×14 (downsample)", 2, 14, 14, G(inputChannels: 128, outputChannels: 256, kernelSize: 1, stride: 2)),
            ("3×3 s2 p1 64→144 ragged 17×23", 1, 17, 23, G(inputChannels: 64, outputChannels: 144, kernelSize: 3, stride: 2, padding: 1)),
            ("3×3 s2 p1 groups 2 96→160 ragged 11×13", 2, 11, 13,
             G(inputChannels: 96, outputChannels: 160, kernelSize: 3, stride: 2, padding: 1, groups: 2)),
            ("7×7 s2 p3 8→136 21×19", 1, 21, 19, G(inputChannels: 8, outputChannels: 136, kernelSize: 7, stride: 2, padding: 3)),
        ]
        let needs = GradientNeeds(input: true, weight: false, bias: false)
        for (i, (name, n, h, w, g)) in cases.enumerated() {
            var rng = SplitMix64(seed: 700 + UInt64(i))
            let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
            let x = try rng.tensor([n, g.inputChannels, h, w], scale: 1)
            let fanIn = Float(g.inputChannels / g.groups * g.kernelSize.height * g.kernelSize.width)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / fanIn.squareRoot())
            let dY = try rng.tensor([n, g.outputChannels, oh, ow], scale: 1)
            let exact = exactInputGradient(dY, weight: wt, geometry: g, height: h, width: w)
            var errors: [Bool: Double] = [:]
            for microkernel in Microkernel.isSupported ? [true, false] : [false] {
                let saved = Microkernel.isEnabled
                Microkernel.isEnabled = microkernel
                defer { Microkernel.isEnabled = saved }
                for threads in [1, 2] {
                    let savedThreads = Gemm.threadCount
                    Gemm.setThreadCount(threads)
                    defer { Gemm.setThreadCount(savedThreads) }
                    let grads = try Convolution.backward(dY, input: x, weight: wt, geometry: g, needs: needs)
                    let error = relativeError(grads.dInput, exact)
                    errors[microkernel] = max(errors[microkernel] ?? 0, error)
                    XCTAssertLessThan(error, 1e-5, "\(name) [microkernel \(microkernel), \(threads) threads]")
                }
            }
            // the phased path is no less accurate than the unfolded one (float32 sums of the same terms)
            if let phased = errors[true], let unfolded = errors[false] {
                XCTAssertLessThan(phased, max(4 * unfolded, 2e-6), "\(name): phased \(phased) against unfolded \(unfolded)")
            }
            let phased = errors[true].map { String(format: "%.1e", $0) } ?? "-", unfolded = errors[false].map { String(format: "%.1e", $0) } ?? "-"
            print("strided dInput against Double, \(name): phased \(phased), unfolded \(unfolded)")
        }
    }
}
