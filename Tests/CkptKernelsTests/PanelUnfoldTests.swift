@testable import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// The panel-layout unfold of the implicit GEMM against im2col written out element by element:
/// strides 1–3 (stride 2 has its own vector copies), left and right padding, runs of every length
/// (7×7 and 14×14 planes, odd widths), pixel ranges that start inside an image and cross images.
final class PanelUnfoldTests: XCTestCase {
    func testUnfoldEqualsElementwiseIm2col() throws {
        try XCTSkipUnless(Microkernel.isSupported, "the panel unfold is compiled for AVX-512")
        var rng = SplitMix64(seed: 0x0f01d)
        // (channels, height, width, kernel, stride, padding)
        let cases = [(3, 14, 14, 3, 2, 1), (2, 13, 15, 3, 2, 1), (3, 28, 28, 7, 2, 3), (2, 56, 57, 1, 2, 0),
                     (2, 33, 70, 3, 2, 1), (1, 9, 100, 5, 2, 2), (2, 12, 12, 3, 1, 1), (2, 11, 40, 3, 3, 1),
                     (1, 40, 96, 3, 2, 0)]
        for (c, h, w, k, s, p) in cases {
            let g = Conv2dGeometry(inputChannels: c, outputChannels: 1, kernelSize: k, stride: s, padding: p)
            let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
            let n = 2, plane = oh * ow, depth = c * k * k
            let x = try rng.tensor([n, c, h, w], scale: 1).values
            for pixels in [0 ..< n * plane, plane / 3 ..< min(n * plane, plane / 3 + 150)] {
                let width = Microkernel.panelWidth
                let floats = (pixels.count + width - 1) / width * width * depth
                var panels = [Float](repeating: .nan, count: floats)
                x.withUnsafeBufferPointer { xb in
                    panels.withUnsafeMutableBufferPointer { pb in
                        guard let xp = xb.baseAddress, let pp = pb.baseAddress else { return }
                        Microkernel.unfold(xp, imageStride: c * h * w, channels: c, height: h, width: w, geometry: g,
                                           outputHeight: oh, outputWidth: ow, pixels: pixels, into: pp)
                    }
                }
                var mismatches = 0
                for (j, i) in pixels.enumerated() {
                    let img = i / plane, oy = (i % plane) / ow, ox = i % ow
                    for r in 0 ..< depth {
                        let ch = r / (k * k), ki = (r / k) % k, kj = r % k
                        let iy = oy * s - p + ki, ix = ox * s - p + kj
                        let expected = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[((img * c + ch) * h + iy) * w + ix] : 0
                        let got = panels[(j / width) * depth * width + r * width + j % width]
                        if got != expected { mismatches += 1 }
                    }
                }
                XCTAssertEqual(mismatches, 0, "c=\(c) \(h)×\(w) k=\(k) s=\(s) p=\(p) pixels \(pixels)")
            }
        }
    }
}
