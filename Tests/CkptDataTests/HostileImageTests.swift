import Foundation
import XCTest
@testable import CkptData

/// Truncated, corrupt, oversized and foreign files: one clear error line naming the file, never
/// a crash, never an allocation of the declared size.
final class HostileImageTests: XCTestCase {
    static let expectedKinds: [String: DataError.Kind?] = [
        "truncated_baseline.jpg": .truncated,
        "truncated_progressive.jpg": .truncated,
        "truncated_header.jpg": .truncated,
        "jpeg_no_eoi.jpg": .truncated, // PIL: "image file is truncated" too
        "jpeg_soi_only.jpg": .truncated,
        "garbage_after_soi.jpg": .corrupt,
        "garbage.jpg": .unsupported,
        "text.png": .unsupported,
        "empty.jpg": .truncated,
        "huge.jpg": .limit,
        "huge.png": .limit,
        "huge_width.png": .limit,
        "zero_width.png": .corrupt,
        "truncated.png": .truncated,
        "png_signature_only.png": .truncated,
        "png_no_iend.png": nil, // decodes, as in PIL: the pixels are all there
        "bad_crc.png": .corrupt, // PIL does not check IDAT CRCs and decodes it; libpng refuses
        "bad_zlib.png": .corrupt,
    ]

    func testEveryHostileFileThrowsOneLineNamingItOrDecodesAsPILDoes() throws {
        let verdicts = try DataFixtures.decode([String: String].self, "hostile.json")
        XCTAssertEqual(Set(verdicts.keys), Set(Self.expectedKinds.keys))
        for (name, kind) in Self.expectedKinds.sorted(by: { $0.key < $1.key }) {
            let path = DataFixtures.path("hostile/" + name)
            do {
                let decoded = try ImageDecoder.decode(contentsOf: path)
                XCTAssertNil(kind, "\(name) decoded, expected \(String(describing: kind))")
                XCTAssertEqual(verdicts[name], "ok", "\(name): PIL said \(verdicts[name] ?? "?")")
                XCTAssertEqual(decoded.image, try DataFixtures.image("rgb8.png"))
            } catch let error as DataError {
                XCTAssertEqual(error.kind, kind, "\(name): \(error)")
                XCTAssertTrue(error.description.hasPrefix(path + ": "), error.description)
                XCTAssertFalse(error.description.contains("\n"))
                let first = error.message.first.map { String($0) } ?? ""
                XCTAssertEqual(first, first.lowercased(), "lower-case: \(error)")
            }
        }
    }

    func testEveryTruncationOfAJPEGThrows() throws {
        for name in ["baseline_420.jpg", "progressive.jpg", "grey.jpg", "ycck.jpg"] {
            let bytes = try ImageDecoder.readFile(DataFixtures.path("images/" + name))
            for n in 0 ..< bytes.count {
                XCTAssertThrowsError(try ImageDecoder.decode(Array(bytes.prefix(n)), file: name), "\(name) cut at \(n)") {
                    XCTAssertNotNil($0 as? DataError)
                }
            }
        }
    }

    func testEveryTruncationOfAPNGThrowsOrGivesTheWholeImage() throws {
        for name in ["rgb8_interlaced.png", "palette4.png", "grey16.png"] {
            let bytes = try ImageDecoder.readFile(DataFixtures.path("images/" + name))
            let whole = try ImageDecoder.decode(bytes, file: name).image
            var decoded = 0
            for n in 0 ..< bytes.count {
                do {
                    let image = try ImageDecoder.decode(Array(bytes.prefix(n)), file: name).image
                    XCTAssertEqual(image, whole, "\(name) cut at \(n)")
                    decoded += 1
                } catch {
                    XCTAssertNotNil(error as? DataError)
                }
            }
            XCTAssertLessThanOrEqual(decoded, 12, "only a cut inside IEND may decode")
        }
    }

    func testRandomCorruptionsNeverCrash() throws {
        var rng = SeededRandom(seed: 2024)
        var outcomes = [String: Int]()
        for name in ["baseline_420.jpg", "progressive.jpg", "cmyk.jpg", "rgba16_interlaced.png", "palette8_trns.png", "grey2.png"] {
            let bytes = try ImageDecoder.readFile(DataFixtures.path("images/" + name))
            for _ in 0 ..< 150 {
                var mutated = bytes
                for _ in 0 ..< 1 + rng.below(8) {
                    let i = 2 + rng.below(mutated.count - 2) // keep the signature's first bytes
                    mutated[i] = UInt8(truncatingIfNeeded: rng.next())
                }
                do {
                    let d = try ImageDecoder.decode(mutated, file: name)
                    XCTAssertEqual(d.image.pixels.count, d.image.width * d.image.height * d.image.channels)
                    outcomes["decoded", default: 0] += 1
                } catch let error as DataError {
                    outcomes[error.kind.rawValue, default: 0] += 1
                }
            }
        }
        XCTAssertGreaterThan(outcomes["decoded", default: 0], 0)
        XCTAssertGreaterThan(outcomes["corrupt", default: 0], 0)
    }

    func testHugeDeclaredSizesAreRefusedBeforeAllocating() throws {
        // 60000 x 60000 RGB would need 10.8 GB: refused from the header alone, quickly
        let start = Date()
        XCTAssertThrowsError(try ImageDecoder.decode(contentsOf: DataFixtures.path("hostile/huge.jpg"))) {
            XCTAssertEqual(($0 as? DataError)?.kind, .limit)
            XCTAssertTrue("\($0)".contains("60000x60000"), "\($0)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
    }

    func testUnreadablePathsAreIOErrors() {
        XCTAssertThrowsError(try ImageDecoder.decode(contentsOf: "/nonexistent/x.jpg")) {
            XCTAssertEqual(($0 as? DataError)?.kind, .io)
        }
        XCTAssertThrowsError(try ImageDecoder.decode(contentsOf: DataFixtures.path("images"))) {
            XCTAssertEqual(($0 as? DataError)?.kind, .io)
            XCTAssertEqual(($0 as? DataError)?.message, "not a regular file (a folder): expected an image file")
        }
        XCTAssertThrowsError(try ImageDecoder.decode(contentsOf: "/dev/zero")) {
            XCTAssertEqual(($0 as? DataError)?.message, "not a regular file (a character device): expected an image file")
        }
    }

    func testAFIFONamedLikeAnImageIsRefusedWithoutWaitingForAWriter() throws {
        // PIL's Image.open blocks here until something writes to the FIFO; ckpt must not hang
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-fifo-\(UUID().uuidString).jpg").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo) }
        let done = expectation(description: "decode returned")
        let result = UnsafeSendableBox<DataError?>(nil)
        Thread.detachNewThread {
            do { _ = try ImageDecoder.decode(contentsOf: fifo) } catch { result.value = error as? DataError }
            done.fulfill()
        }
        wait(for: [done], timeout: 10)
        XCTAssertEqual(result.value, DataError(.io, file: fifo, "not a regular file (a FIFO): expected an image file"))
    }
}

/// A value a detached thread hands back to the test after an expectation is fulfilled.
private final class UnsafeSendableBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
