import CkptKernels
import Foundation
import XCTest

// N images, C channels, H rows, W columns (NCHW).

final class PoolingEdgeTests: XCTestCase {
    /// The vectorised 2×2/2 path equals the window-by-window maximum, NaN and ±inf included,
    /// on planes with odd sizes and widths that leave a scalar tail.
    func testHalvingMaxPoolEqualsWindowMaximum() throws {
        let (c, h, w) = (3, 21, 37)
        var values = (0 ..< c * h * w).map { Float(sin(0.61 * Double($0))) }
        for (i, v) in [(5, Float.nan), (40, .infinity), (41, -.infinity), (77, .nan), (300, .nan), (1001, -.infinity)] { values[i] = v }
        let x = try DenseTensor(shape: [1, c, h, w], values: values)
        let y = try Pooling.maxForward(x, geometry: PoolGeometry(kernelSize: 2, stride: 2))
        let (oh, ow) = (h / 2, w / 2)
        XCTAssertEqual(y.shape, [1, c, oh, ow])
        for ch in 0 ..< c {
            for oy in 0 ..< oh {
                for ox in 0 ..< ow {
                    let window = [(0, 0), (0, 1), (1, 0), (1, 1)].map { values[(ch * h + 2 * oy + $0.0) * w + 2 * ox + $0.1] }
                    let got = y.values[(ch * oh + oy) * ow + ox]
                    if window.contains(where: \.isNaN) {
                        XCTAssertTrue(got.isNaN, "channel \(ch) (\(oy), \(ox))")
                    } else {
                        XCTAssertEqual(got, window.max(), "channel \(ch) (\(oy), \(ox))")
                    }
                }
            }
        }
    }

    /// ResNet's 3×3, stride-2, padding-1 pool (vectorised 16 outputs at a time) equals the
    /// window-by-window maximum for widths around the vector size, NaN and ±inf included, with
    /// and without ceil_mode.
    func testStemMaxPoolEqualsWindowMaximum() throws {
        for w in [1, 2, 7, 31, 32, 33, 34, 35, 63, 64, 65, 97, 112] {
            for ceil in [false, true] {
                let (c, h) = (2, 9)
                var values = (0 ..< c * h * w).map { Float(sin(0.37 * Double($0) + Double(w))) }
                for i in Swift.stride(from: 3, to: values.count, by: 29) { values[i] = .nan }
                for i in Swift.stride(from: 11, to: values.count, by: 41) { values[i] = .infinity }
                let g = PoolGeometry(kernelSize: 3, stride: 2, padding: 1, ceilMode: ceil)
                let y = try Pooling.maxForward(try DenseTensor(shape: [1, c, h, w], values: values), geometry: g)
                let oh = try g.outputLength(h, operation: "t"), ow = try g.outputLength(w, operation: "t")
                XCTAssertEqual(y.shape, [1, c, oh, ow])
                for ch in 0 ..< c {
                    for oy in 0 ..< oh {
                        for ox in 0 ..< ow {
                            var window: [Float] = []
                            for iy in 2 * oy - 1 ... 2 * oy + 1 where iy >= 0 && iy < h {
                                for ix in 2 * ox - 1 ... 2 * ox + 1 where ix >= 0 && ix < w { window.append(values[(ch * h + iy) * w + ix]) }
                            }
                            let got = y.values[(ch * oh + oy) * ow + ox]
                            if window.contains(where: \.isNaN) {
                                XCTAssertTrue(got.isNaN, "w \(w) ceil \(ceil) channel \(ch) (\(oy), \(ox))")
                            } else {
                                XCTAssertEqual(got, window.max(), "w \(w) ceil \(ceil) channel \(ch) (\(oy), \(ox))")
                            }
                        }
                    }
                }
            }
        }
    }

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
