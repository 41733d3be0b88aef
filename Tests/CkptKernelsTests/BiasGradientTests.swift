@testable import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// The bias gradient of convolutions and transposed convolutions (`Convolution.channelSums`):
/// each channel's sum over images and pixels against the sum in Double, on planes shorter than
/// one 32-lane block, with ragged tails, and large enough to be dealt to the cores.
final class BiasGradientTests: XCTestCase {
    func testChannelSumsMatchDouble() throws {
        var rng = SplitMix64(seed: 0xb1a5)
        for shape in [[1, 5, 1, 1], [2, 3, 5, 7], [3, 4, 8, 4], [4, 20, 40, 41], [2, 7, 0, 3]] {
            let t = try rng.tensor(shape, scale: 1)
            let plane = shape[2] * shape[3]
            let sums = Convolution.channelSums(t)
            XCTAssertEqual(sums.shape, [shape[1]])
            for ch in 0 ..< shape[1] {
                var exact = 0.0, magnitude = 0.0
                for img in 0 ..< shape[0] {
                    for i in 0 ..< plane {
                        let v = Double(t.values[(img * shape[1] + ch) * plane + i])
                        exact += v
                        magnitude += abs(v)
                    }
                }
                // Float sums of at most a plane: a few ulps of the magnitude summed
                XCTAssertEqual(Double(sums.values[ch]), exact, accuracy: 1e-6 * magnitude + 1e-7, "\(shape), channel \(ch)")
            }
        }
    }
}
