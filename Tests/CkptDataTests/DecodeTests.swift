import Foundation
import CkptFormat
import XCTest
@testable import CkptData

/// Decoded pixels against PIL's `Image.open(p).convert("RGB")` / `.convert("L")`, byte for byte.
final class DecodeTests: XCTestCase {
    func testEveryFixtureImageDecodesAsPILDecodesIt() throws {
        let expected = try DataFixtures.decode(DataFixtures.DecodeFile.self, "decode.json")
        XCTAssertGreaterThan(expected.images.count, 40)
        for (name, entry) in expected.images.sorted(by: { $0.key < $1.key }) {
            let decoded = try ImageDecoder.decode(contentsOf: DataFixtures.path("images/" + name))
            XCTAssertEqual(decoded.mode, entry.mode, name)
            XCTAssertEqual(decoded.image.width, entry.width, name)
            XCTAssertEqual(decoded.image.height, entry.height, name)
            XCTAssertEqual(decoded.warnings, [], name)
            if let rgb = entry.rgb {
                DataFixtures.assertBytesEqual(decoded.image.rgb().pixels, try DataFixtures.bytes(rgb), "\(name) as RGB")
            }
            if let grey = entry.grey {
                DataFixtures.assertBytesEqual(decoded.image.grey().pixels, try DataFixtures.bytes(grey), "\(name) as L")
            }
            if let sha = entry.rgb_sha256 {
                XCTAssertEqual(SHA256Hex.digest(decoded.image.rgb().pixels), sha, name)
            }
        }
    }

    /// The kind of the `DataError` decoding `bytes` (named `file`) throws, checking that its line
    /// names the file; nil when it decodes or throws anything else.
    private func errorKind(_ bytes: [UInt8], file: String) -> DataError.Kind? {
        do {
            _ = try ImageDecoder.decode(bytes, file: file)
            return nil
        } catch let e as DataError {
            XCTAssertTrue(e.description.contains(file), e.description)
            return e.kind
        } catch {
            return nil
        }
    }

    func testBrokenNetpbmFilesAreOneLineErrors() throws {
        func kind(_ text: String, _ tail: [UInt8] = []) -> DataError.Kind? { errorKind(Array(text.utf8) + tail, file: "x.ppm") }
        XCTAssertEqual(kind("P6\n2 2\n255\n", [1, 2, 3]), .truncated)
        XCTAssertEqual(kind("P5\n2 2\n65535\n", [0, 1, 0, 2, 0, 3]), .truncated, "two bytes a sample above 255")
        XCTAssertEqual(kind("P6\n2 2\n"), .truncated)
        XCTAssertEqual(kind("P6\n-2 2\n255\n"), .corrupt)
        XCTAssertEqual(kind("P5\n2 2\n0\n"), .corrupt)
        XCTAssertEqual(kind("P5\n2 2\n65536\n"), .corrupt)
        XCTAssertEqual(kind("P5\n2 2\n12345678901\n"), .corrupt, "a token of more than 10 characters")
        XCTAssertEqual(kind("P2\n2 1\n10\n3 11\n"), .corrupt, "a plain sample above maxval")
        XCTAssertEqual(kind("P1\n2 1\n0 2\n"), .corrupt)
        XCTAssertEqual(kind("P3\n1 1\n255\n1 2\n"), .truncated)
        XCTAssertEqual(kind("P6\n100000 100000\n255\n"), .limit)
        // a comment inside a token joins its halves, as PIL's _read_token does
        let joined = try ImageDecoder.decode(Array("P5\n1#c\n2 1\n255\n".utf8) + [7] + Array(repeating: 9, count: 11), file: "x.pgm")
        XCTAssertEqual(joined.image.width, 12)
    }

    func testBrokenOrUnreadBMPFilesAreOneLineErrors() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: DataFixtures.path("images/bmp_24.bmp")))
        func kind(_ bytes: [UInt8]) -> DataError.Kind? { errorKind(bytes, file: "x.bmp") }
        func patched(_ offset: Int, _ value: UInt32) -> [UInt8] {
            var b = [UInt8](good)
            for i in 0 ..< 4 { b[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
            return b
        }
        XCTAssertNil(kind([UInt8](good)))
        XCTAssertEqual(kind(Array(good.dropLast(5))), .truncated)
        XCTAssertEqual(kind(Array(good.prefix(20))), .truncated)
        XCTAssertEqual(kind(patched(30, 1)), .unsupported, "RLE8")
        XCTAssertEqual(kind(patched(30, 4)), .unsupported, "JPEG in BMP")
        XCTAssertEqual(kind(patched(14, 20)), .unsupported, "an unknown header size")
        XCTAssertEqual(kind(patched(18, 0)), .corrupt, "zero width")
        XCTAssertEqual(kind(patched(18, 1 << 30)), .limit)
        XCTAssertEqual(kind(patched(30, 3)), .unsupported, "24-bit bit fields without masks PIL knows")
    }

    func testGreySourcesDecodeToOneChannelAndColourToThree() throws {
        for name in ["grey.jpg", "grey16.png", "grey_alpha16.png", "grey1.png", "grey_alpha8.png"] {
            XCTAssertEqual(try ImageDecoder.decode(contentsOf: DataFixtures.path("images/" + name)).image.channels, 1, name)
        }
        for name in ["cmyk.jpg", "ycck.jpg", "palette8.png", "rgba16.png", "baseline_420.jpg"] {
            XCTAssertEqual(try ImageDecoder.decode(contentsOf: DataFixtures.path("images/" + name)).image.channels, 3, name)
        }
    }

    func testMasksGiveClassIndicesNotColours() throws {
        let expected = try DataFixtures.decode(DataFixtures.DecodeFile.self, "decode.json")
        for name in ["mask_palette.png", "mask_grey.png", "mask_grey4.png"] {
            let mask = try ImageDecoder.labelMap(contentsOf: DataFixtures.path("images/" + name))
            let labels = try DataFixtures.bytes(try XCTUnwrap(expected.images[name]?.labels))
            DataFixtures.assertBytesEqual(mask.labels, labels, name)
        }
        XCTAssertThrowsError(try ImageDecoder.labelMap(contentsOf: DataFixtures.path("images/baseline_420.jpg"))) {
            XCTAssertEqual(($0 as? DataError)?.kind, .unsupported)
        }
        XCTAssertThrowsError(try ImageDecoder.labelMap(contentsOf: DataFixtures.path("images/rgb8.png"))) {
            XCTAssertEqual(($0 as? DataError)?.kind, .unsupported)
        }
    }

    func testFormatComesFromTheBytesNotTheExtension() throws {
        let png = try ImageDecoder.readFile(DataFixtures.path("images/rgb8.png"))
        let decoded = try ImageDecoder.decode(png, file: "looks-like.jpg")
        XCTAssertEqual(decoded.format, .png)
    }
}

/// SHA-256 as lower-case hex, for fixtures that store a digest instead of the pixels.
enum SHA256Hex {
    static func digest(_ bytes: [UInt8]) -> String {
        var hash = SHA256()
        hash.update(bytes)
        return hash.finalizeHex()
    }
}
