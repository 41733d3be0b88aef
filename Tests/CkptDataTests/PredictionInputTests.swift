import Foundation
import XCTest
@testable import CkptData

/// What `ckpt predict` reads besides the model: label files, the image files a folder holds, and
/// the grey PNG it writes masks as.
final class PredictionInputTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-predict-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        let url = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    func testLabelsAreNonBlankLinesTrimmed() throws {
        XCTAssertEqual(ClassLabels.parse("cat\ndog\n"), ["cat", "dog"])
        XCTAssertEqual(ClassLabels.parse("\u{FEFF}cat\r\n\r\n  dog  \r\n\n\ntiger shark\n"), ["cat", "dog", "tiger shark"])
        XCTAssertEqual(ClassLabels.parse("only"), ["only"])
        XCTAssertEqual(ClassLabels.parse("\n \n"), [])
        try write("labels.txt", Array("5\n6\n7\n".utf8))
        XCTAssertEqual(try ClassLabels.read(contentsOf: path("labels.txt")), ["5", "6", "7"])
    }

    func testBadLabelFilesAreOneErrorNamingTheFile() throws {
        try write("empty.txt", Array("\n\n".utf8))
        try write("binary.txt", [0x66, 0xFF, 0xFE, 0x0A])
        let cases: [(String, DataError.Kind)] = [("missing.txt", .io), ("empty.txt", .layout), ("binary.txt", .corrupt), ("", .io)]
        for (name, kind) in cases {
            XCTAssertThrowsError(try ClassLabels.read(contentsOf: path(name))) { e in
                XCTAssertEqual((e as? DataError)?.kind, kind, name)
                XCTAssertEqual((e as? DataError)?.file, path(name))
            }
        }
    }

    /// A folder's images, recursively, by full path in code-point order; other entries reported.
    func testAFolderListsItsImagesRecursivelyInPathOrder() throws {
        for name in ["b.png", "a/x.jpg", "a-b.JPEG", "a/deeper/0.png", "z.txt", ".hidden.png", "c.webp", ".git/config"] {
            try write("in/" + name, [1])
        }
        let list = try ImageFileList.collect([path("in")])
        XCTAssertEqual(list.paths, ["a-b.JPEG", "a/deeper/0.png", "a/x.jpg", "b.png"].map { path("in/" + $0) })
        XCTAssertEqual(Set(list.issues.map { "\($0.kind.rawValue) \($0.path)" }), [
            "hidden \(path("in/.git"))", "hidden \(path("in/.hidden.png"))",
            "notAnImage \(path("in/z.txt"))", "unsupportedFormat \(path("in/c.webp"))",
        ])
        // a file named directly is kept whatever its name; inputs keep their order
        let mixed = try ImageFileList.collect([path("in/z.txt"), path("in/a")])
        XCTAssertEqual(mixed.paths, [path("in/z.txt"), path("in/a/deeper/0.png"), path("in/a/x.jpg")])
        XCTAssertEqual(try ImageFileList.collect([path("in") + "/"]).paths.first, path("in/a-b.JPEG"))
    }

    func testMissingInputsAndEmptyFoldersAreErrorsNamingThem() throws {
        try FileManager.default.createDirectory(atPath: path("empty/sub"), withIntermediateDirectories: true)
        try write("empty/sub/notes.txt", [1])
        XCTAssertThrowsError(try ImageFileList.collect([path("nope.png")])) { e in
            XCTAssertEqual((e as? DataError)?.description, "\(path("nope.png")): cannot read: No such file or directory")
        }
        XCTAssertThrowsError(try ImageFileList.collect([path("empty")])) { e in
            XCTAssertEqual((e as? DataError)?.kind, .layout)
            XCTAssertEqual((e as? DataError)?.file, path("empty"))
        }
    }

    /// The mask PNG reads back as the same class indices, as a grey image, with a valid layout.
    func testAMaskPNGReadsBackAsTheSameLabels() throws {
        let labels = (0 ..< 37 * 23).map { UInt8(truncatingIfNeeded: ($0 * 7) % 251) }
        let mask = try LabelMap(width: 37, height: 23, labels: labels)
        let bytes = try mask.pngBytes()
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(Array(bytes[12 ..< 16]), Array("IHDR".utf8))
        XCTAssertEqual(bytes[24], 8, "bit depth")
        XCTAssertEqual(bytes[25], 0, "colour type grey")
        try write("mask.png", bytes)
        XCTAssertEqual(try ImageDecoder.labelMap(contentsOf: path("mask.png")), mask)
        let decoded = try ImageDecoder.decode(contentsOf: path("mask.png"))
        XCTAssertEqual(decoded.mode, "L")
        XCTAssertEqual(decoded.image.pixels, labels)
        // a constant map compresses
        XCTAssertLessThan(try LabelMap(width: 512, height: 512, labels: [UInt8](repeating: 1, count: 512 * 512)).pngBytes().count, 2000)
        XCTAssertThrowsError(try PNGEncoder.grey(width: 3, height: 3, pixels: [1, 2], file: "m.png")) { e in
            XCTAssertEqual((e as? DataError)?.kind, .invalidArgument)
        }
    }
}
