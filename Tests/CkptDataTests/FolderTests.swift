import Foundation
import XCTest
@testable import CkptData

/// ImageFolder order and class map against torchvision, the edge cases reported, splits and
/// segmentation pairing.
final class FolderTests: XCTestCase {
    struct FolderFile: Decodable {
        var tree: [String]
        var classes: [String]
        var samples: [[Value]]
        enum Value: Decodable {
            case string(String), int(Int)
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let i = try? c.decode(Int.self) { self = .int(i) } else { self = .string(try c.decode(String.self)) }
            }
        }
    }

    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temp)
    }

    /// Creates `paths` under `root` (a trailing `/` makes a folder); files get `content`.
    func make(_ paths: [String], under root: URL, content: Data = Data("x".utf8)) throws {
        for rel in paths {
            let url = root.appendingPathComponent(rel)
            if rel.hasSuffix("/") {
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            } else {
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try content.write(to: url)
            }
        }
    }

    func testWithHiddenIncludedTheOrderAndClassesAreTorchvisions() throws {
        let expected = try DataFixtures.decode(FolderFile.self, "folder.json")
        try make(expected.tree, under: temp)
        let folder = try ImageFolder(root: temp.path, options: FolderOptions(includeHidden: true))
        XCTAssertEqual(folder.classes, expected.classes)
        // torchvision also indexes .tif/.webp; ckpt reports them instead (it decodes .ppm/.pgm/.bmp)
        let want = expected.samples.compactMap { pair -> Sample? in
            guard case let .string(rel) = pair[0], case let .int(index) = pair[1] else { return nil }
            if ImageExtensions.matches(rel, [".tif", ".tiff", ".webp"]) { return nil }
            return Sample(path: temp.path + "/" + rel, classIndex: index)
        }
        XCTAssertEqual(folder.samples, want)
        let unsupported = folder.issues.filter { $0.kind == .unsupportedFormat }.map { URL(fileURLWithPath: $0.path).lastPathComponent }
        XCTAssertEqual(unsupported, ["x.TIF", "z.webp"])
    }

    func testByDefaultHiddenEntriesAreLeftOutAndReported() throws {
        let expected = try DataFixtures.decode(FolderFile.self, "folder.json")
        try make(expected.tree, under: temp)
        let folder = try ImageFolder(root: temp.path)
        XCTAssertEqual(folder.classes, ["Zebra", "_under", "cat", "dog", "dog2", "empty", "onlytext"])
        XCTAssertFalse(folder.samples.contains { $0.path.contains("/.") || $0.path.contains("__MACOSX") })
        func issues(_ kind: FolderIssue.Kind) -> [String] {
            folder.issues.filter { $0.kind == kind }.map { String($0.path.dropFirst(temp.path.count + 1)) }
        }
        XCTAssertEqual(Set(issues(.hidden)), [".DS_Store", ".ipynb_checkpoints", "__MACOSX", "cat/.DS_Store", "cat/.hidden.jpg", "dog/.ipynb_checkpoints"])
        XCTAssertEqual(issues(.strayFile), ["top.jpg"])
        XCTAssertEqual(Set(issues(.notAnImage)), ["cat/notes.txt", "cat/w.jpg.txt", "onlytext/readme.md"])
        XCTAssertEqual(issues(.emptyClass), ["empty", "onlytext"])
        // uppercase and mixed-case extensions are images; nested folders are walked
        let names = folder.samples.map { String($0.path.dropFirst(temp.path.count + 1)) }
        XCTAssertTrue(names.contains("cat/002.JPG") && names.contains("dog/1.PNG") && names.contains("dog/2.Jpeg"))
        XCTAssertTrue(names.contains("cat/sub/deeper/005.png"))
    }

    func testTrainAndValShareOneClassMapWhenValLacksAClass() throws {
        try make(["train/ant/1.jpg", "train/bee/1.jpg", "train/cat/1.jpg", "val/ant/2.jpg", "val/cat/2.jpg", "val/cat/3.png"], under: temp)
        let ds = try ImageDataset.load(temp.path)
        XCTAssertEqual(ds.classes, ["ant", "bee", "cat"])
        XCTAssertEqual(ds.layout, "train/val folders")
        XCTAssertEqual(ds.validation.map(\.classIndex), [0, 2, 2]) // torchvision's own val ImageFolder would say [0, 1, 1]
        XCTAssertEqual(ds.issues, [FolderIssue(.classMissing, path: temp.path + "/val/bee", split: "val")])
        XCTAssertThrowsError(try ImageDataset.load(temp.path, validationFraction: 0.2)) {
            XCTAssertEqual(($0 as? DataError)?.kind, .layout)
        }
    }

    func testATrainingClassFolderWithoutImagesIsRefusedAsImageFolderRefusesIt() throws {
        // torchvision: FileNotFoundError("Found no valid file for the classes bee. ...")
        try make(["train/ant/1.jpg", "train/bee/1.webp", "train/bee/notes.txt", "train/bee/.2.jpg", "val/ant/2.jpg"], under: temp)
        XCTAssertThrowsError(try ImageDataset.load(temp.path)) {
            XCTAssertEqual(($0 as? DataError)?.kind, .layout)
            XCTAssertEqual(($0 as? DataError)?.file, temp.path + "/train/bee")
            XCTAssertEqual(($0 as? DataError)?.message, "class folder without a training image (what it holds is left out: "
                + "1 in formats ckpt does not decode (.tif, .webp), 1 hidden, 1 not images); "
                + "torchvision's ImageFolder refuses it too: add images or remove the folder")
        }
        let one = temp.appendingPathComponent("one")
        try make(["a/1.jpg", "a/2.jpg", "b/1.png", "c/sub/"], under: one)
        for fraction in [nil, 0.5] {
            XCTAssertThrowsError(try ImageDataset.load(one.path, validationFraction: fraction)) {
                XCTAssertEqual(($0 as? DataError)?.file, one.path + "/c")
                XCTAssertTrue("\($0)".contains("(it holds no file)"), "\($0)")
            }
        }
        // an empty class folder in val/ only is reported, as a class missing there is
        let valOnly = temp.appendingPathComponent("valonly")
        try make(["train/ant/1.jpg", "train/bee/1.jpg", "val/ant/2.jpg", "val/bee/"], under: valOnly)
        let ds = try ImageDataset.load(valOnly.path)
        XCTAssertEqual(ds.train.map(\.classIndex), [0, 1])
        XCTAssertEqual(ds.issues, [FolderIssue(.emptyClass, path: valOnly.path + "/val/bee", split: "val")])
    }

    func testAClassOnlyInValStillGetsItsIndex() throws {
        try make(["train/ant/1.jpg", "train/cat/1.jpg", "validation/bee/1.jpg"], under: temp)
        let ds = try ImageDataset.load(temp.path)
        XCTAssertEqual(ds.classes, ["ant", "bee", "cat"])
        XCTAssertEqual(ds.train.map(\.classIndex), [0, 2])
        XCTAssertEqual(ds.validation.map(\.classIndex), [1])
        XCTAssertEqual(ds.issues.map(\.kind), [.classMissing, .classMissing, .classMissing])
    }

    func testOneFolderSplitsEachClassBySeedKeepingOrder() throws {
        try make((0 ..< 10).map { "a/\($0).jpg" } + (0 ..< 5).map { "b/\($0).png" } + ["c/only.jpg"], under: temp)
        let one = try ImageDataset.load(temp.path, validationFraction: 0.2, seed: 7)
        let again = try ImageDataset.load(temp.path, validationFraction: 0.2, seed: 7)
        let other = try ImageDataset.load(temp.path, validationFraction: 0.2, seed: 8)
        XCTAssertEqual(one.train, again.train)
        XCTAssertEqual(one.validation, again.validation)
        XCTAssertNotEqual(one.validation, other.validation)
        XCTAssertEqual(one.validation.filter { $0.classIndex == 0 }.count, 2)
        XCTAssertEqual(one.validation.filter { $0.classIndex == 1 }.count, 1)
        XCTAssertEqual(one.train.count + one.validation.count, 16)
        XCTAssertEqual(one.issues, [FolderIssue(.classMissing, path: temp.path + "/c", split: "val")])
        for part in [one.train, one.validation] {
            XCTAssertEqual(part, part.sorted { ($0.classIndex, $0.path) < ($1.classIndex, $1.path) })
        }
        XCTAssertEqual(one.layout, "one folder split 80/20 (seed 7)")
        XCTAssertEqual(try ImageDataset.load(temp.path).validation, [])
    }

    func testAFolderWithoutClassFoldersIsALayoutError() throws {
        try make(["a.jpg", "b.jpg"], under: temp)
        XCTAssertThrowsError(try ImageDataset.load(temp.path)) {
            XCTAssertEqual(($0 as? DataError)?.kind, .layout)
            XCTAssertTrue("\($0)".contains("no class folders"), "\($0)")
        }
        XCTAssertThrowsError(try ImageDataset.load(temp.path + "/missing")) {
            XCTAssertEqual(($0 as? DataError)?.kind, .io)
        }
    }

    func testSymlinkCyclesAreReportedNotFollowedForever() throws {
        try make(["a/1.jpg", "a/sub/2.jpg"], under: temp)
        try FileManager.default.createSymbolicLink(atPath: temp.path + "/a/sub/loop", withDestinationPath: temp.path + "/a")
        let folder = try ImageFolder(root: temp.path)
        XCTAssertEqual(folder.samples.count, 2)
        XCTAssertEqual(folder.issues.map(\.kind), [.linkCycle])
    }

    func testSegmentationPairsByStemAndReportsTheRest() throws {
        try make(["images/001.jpg", "images/002.jpg", "images/003.png", "images/sub/004.jpg", "images/005.jpg", "images/005.png",
                  "masks/001.png", "masks/002.png", "masks/sub/004.png", "masks/005.png", "masks/999.png", "masks/readme.txt"], under: temp)
        let ds = try SegmentationDataset.load(temp.path)
        let pairs = ds.train.map { [$0.imagePath, $0.maskPath].map { String($0.dropFirst(temp.path.count + 1)) } }
        XCTAssertEqual(pairs, [["images/001.jpg", "masks/001.png"], ["images/002.jpg", "masks/002.png"],
                               ["images/005.jpg", "masks/005.png"], ["images/sub/004.jpg", "masks/sub/004.png"]])
        let issues = ds.issues.map { "\($0.kind.rawValue) \($0.path.dropFirst(temp.path.count + 1))" }
        XCTAssertEqual(Set(issues), ["duplicateStem images/005.png", "unpaired images/003.png", "unpaired masks/999.png", "notAnImage masks/readme.txt"])
        let split = try SegmentationDataset.load(temp.path, validationFraction: 0.25, seed: 1)
        XCTAssertEqual(split.validation.count, 1)
        XCTAssertEqual(split.train.count, 3)
    }

    func testSecondImagesPairByStemAndTheirAbsenceIsALayoutError() throws {
        try make(["images/001.jpg", "images/002.jpg", "images/003.jpg", "masks/001.png", "masks/002.png", "masks/003.png"], under: temp)
        XCTAssertThrowsError(try SegmentationDataset.load(temp.path, secondImages: true)) { e in
            XCTAssertTrue("\(e)".contains("no images2/ folder"), "\(e)")
        }
        XCTAssertNil(try SegmentationDataset.load(temp.path).train.first?.secondImagePath, "images2/ is read only when asked for")
        try make(["images2/001.png", "images2/003.jpg", "images2/004.jpg"], under: temp)
        let ds = try SegmentationDataset.load(temp.path, secondImages: true)
        let triples = ds.train.map { [$0.imagePath, $0.secondImagePath ?? "-", $0.maskPath].map { String($0.dropFirst(temp.path.count + 1)) } }
        XCTAssertEqual(triples, [["images/001.jpg", "images2/001.png", "masks/001.png"], ["images/003.jpg", "images2/003.jpg", "masks/003.png"]])
        let issues = ds.issues.map { "\($0.kind.rawValue) \($0.path.dropFirst(temp.path.count + 1))" }
        XCTAssertEqual(Set(issues), ["unpaired images/002.jpg", "unpaired images2/004.jpg"])
    }
}
