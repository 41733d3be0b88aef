import Foundation
import XCTest
@testable import CkptData

/// Resizing against Pillow's `Image.resize` and torchvision's `Resize` output sizes.
final class ResizeTests: XCTestCase {
    struct ResizeFile: Decodable {
        struct Bilinear: Decodable { var width: Int; var height: Int; var rgb: String; var grey: String }
        struct Nearest: Decodable { var width: Int; var height: Int; var labels: String }
        struct Size: Decodable { var width: Int; var height: Int; var size: Int; var out_width: Int; var out_height: Int }
        var bilinear: [Bilinear]
        var nearest: [Nearest]
        var resize_sizes: [Size]
    }

    func testBilinearEqualsPillowByteForByte() throws {
        let expected = try DataFixtures.decode(ResizeFile.self, "resize.json")
        let source = try DataFixtures.image("resize_src.png")
        XCTAssertEqual(expected.bilinear.count, 16)
        for case_ in expected.bilinear {
            let rgb = try source.resized(width: case_.width, height: case_.height)
            XCTAssertEqual(rgb.width, case_.width)
            XCTAssertEqual(rgb.height, case_.height)
            DataFixtures.assertBytesEqual(rgb.pixels, try DataFixtures.bytes(case_.rgb), "RGB \(case_.width)x\(case_.height)")
            let grey = try source.grey().resized(width: case_.width, height: case_.height)
            DataFixtures.assertBytesEqual(grey.pixels, try DataFixtures.bytes(case_.grey), "L \(case_.width)x\(case_.height)")
        }
    }

    func testNearestEqualsPillowOnMasks() throws {
        let expected = try DataFixtures.decode(ResizeFile.self, "resize.json")
        let mask = try ImageDecoder.labelMap(contentsOf: DataFixtures.path("images/mask_palette.png"))
        for case_ in expected.nearest {
            let out = try mask.resizedNearest(width: case_.width, height: case_.height)
            DataFixtures.assertBytesEqual(out.labels, try DataFixtures.bytes(case_.labels), "nearest \(case_.width)x\(case_.height)")
        }
    }

    func testResizeOutputSizeIsTorchvisions() throws {
        let expected = try DataFixtures.decode(ResizeFile.self, "resize.json")
        for c in expected.resize_sizes {
            let out = Resize(size: c.size).outputSize(width: c.width, height: c.height)
            XCTAssertEqual(out.width, c.out_width, "\(c.width)x\(c.height) -> \(c.size)")
            XCTAssertEqual(out.height, c.out_height, "\(c.width)x\(c.height) -> \(c.size)")
        }
    }

    func testSameSizeIsACopyAndBadSizesThrow() throws {
        let source = try DataFixtures.image("crop_src.png")
        XCTAssertEqual(try source.resized(width: source.width, height: source.height), source)
        XCTAssertThrowsError(try source.resized(width: 0, height: 3))
        XCTAssertThrowsError(try source.resized(width: 1 << 20, height: 1 << 20)) {
            XCTAssertEqual(($0 as? DataError)?.kind, .invalidArgument)
        }
    }

    func testFixedPointWeightsOfEachOutputPixelSumToOne() {
        // Pillow normalises each pixel's weights before rounding them: the sum stays within
        // a few units of 2^22 whatever the scale
        for (inSize, outSize) in [(97, 40), (73, 113), (500, 224), (3, 1), (1, 9)] {
            let taps = ResampleTaps(inSize: inSize, in1: Float(inSize), outSize: outSize)
            for i in 0 ..< outSize {
                let sum = (0 ..< taps.count[i]).reduce(0) { $0 + Int(taps.weights[i * taps.taps + $1]) }
                XCTAssertLessThanOrEqual(abs(sum - (1 << 22)), taps.count[i], "\(inSize)->\(outSize) pixel \(i)")
            }
        }
    }
}
