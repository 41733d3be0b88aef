import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Every file of fixtures/hostile (made by fixtures/hostile/make_hostile.py) meets its
/// expectation: refused with one line naming what and where, or loaded with the right tensors;
/// never a crash, a hang, or executed code.
final class HostileFixtureTests: XCTestCase {
    static let dir = GoldenFixtureTests.fixtures.appendingPathComponent("hostile")

    struct Case {
        let file: String
        let expect: String
        let kind: String?
        let mentions: [String]
        let tensors: Int?
    }

    static func cases() throws -> [Case] {
        let data = try Data(contentsOf: dir.appendingPathComponent("expect.json"))
        let v = try data.withUnsafeBytes { try JSONValue.parse($0) }
        return (v.arrayValue ?? []).map { e in
            Case(file: e["file"]?.stringValue ?? "", expect: e["expect"]?.stringValue ?? "",
                 kind: e["kind"]?.stringValue, mentions: e["mentions"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                 tensors: e["tensors"]?.numberValue?.intValue)
        }
    }

    /// Reads every tensor's bytes, as a user's convert would (views too large to expand are refused cleanly).
    private func touchAll(_ c: Checkpoint, _ name: String) {
        for (p, t) in c.tensors {
            do {
                _ = try t.withContiguousBytes { $0.count }
            } catch let e as TensorError {
                if case .tooLarge = e { continue }
                // a clean error is acceptable for data; it must name something
                XCTAssertFalse("\(e)".isEmpty, "\(name): \(p)")
            } catch {
                // FormatError from a lazily loaded record: clean, one line
                XCTAssertFalse("\(error)".contains("\n"), "\(name): \(p)")
            }
        }
    }

    func testEveryHostileFileMeetsItsExpectation() throws {
        let cases = try Self.cases()
        XCTAssertGreaterThan(cases.count, 200)
        for c in cases {
            let path = Self.dir.appendingPathComponent(c.file).path
            var loaded: Checkpoint?
            var failure: FormatError?
            do {
                loaded = try CheckpointReader.read(path: path)
            } catch let e as FormatError {
                failure = e
            } catch {
                XCTFail("\(c.file): error of type \(type(of: error)): \(error)")
                continue
            }
            let line = failure?.description ?? ""
            switch c.expect {
            case "refuse":
                guard let f = failure else {
                    XCTFail("\(c.file): loaded, expected a refusal")
                    continue
                }
                XCTAssertFalse(line.contains("\n") || line.contains("\r"), "\(c.file): error is not one line")
                XCTAssertTrue(line.hasPrefix(path), "\(c.file): error does not name the file: \(line)")
                for m in c.mentions { XCTAssertTrue(line.contains(m), "\(c.file): error does not mention \(m): \(line)") }
                if let k = c.kind, k == "refused" {
                    XCTAssertTrue([.refused, .unsupported, .corrupt].contains(f.kind), "\(c.file): kind \(f.kind), expected \(k)")
                }
            case "load":
                guard let ckpt = loaded else {
                    XCTFail("\(c.file): refused, expected to load: \(line)")
                    continue
                }
                XCTAssertEqual(ckpt.tensors.count, c.tensors, "\(c.file)")
                touchAll(ckpt, c.file)
            case "salvage":
                XCTAssertNotNil(failure, "\(c.file): loaded without --salvage")
                do {
                    let s = try CheckpointReader.read(path: path, options: UnpickleOptions(salvage: true))
                    XCTAssertEqual(s.tensors.count, c.tensors, "\(c.file) with salvage")
                    XCTAssertFalse(s.info.disallowedGlobals.isEmpty, "\(c.file): salvage should report the globals it kept inert")
                } catch {
                    XCTFail("\(c.file): salvage failed: \(error)")
                }
            case "either":
                if let ckpt = loaded {
                    XCTAssertEqual(ckpt.tensors.count, c.tensors, "\(c.file)")
                    touchAll(ckpt, c.file)
                } else {
                    XCTAssertFalse(line.contains("\n"), "\(c.file): error is not one line")
                }
            default:
                XCTFail("\(c.file): unknown expectation \(c.expect)")
            }
        }
    }

    /// Every truncation of a valid zip checkpoint is refused cleanly (property test over a real file).
    func testEveryTruncationOfAValidFileIsRefused() throws {
        let path = GoldenFixtureTests.fixtures.appendingPathComponent("valid/cnn.pth").path
        let full = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        for n in stride(from: 0, to: full.count, by: 7) {
            let region = ByteRegion(Array(full[0 ..< n]))
            XCTAssertThrowsError(try { let c = try CheckpointReader.read(region: region, file: "cut"); for (_, t) in c.tensors { _ = try t.contiguousBytes() } }(), "truncated at \(n)")
        }
    }

    /// Same for the legacy stream: cut anywhere, the reader refuses or (past the last record) loads.
    func testEveryTruncationOfALegacyFileIsRefused() throws {
        let path = GoldenFixtureTests.fixtures.appendingPathComponent("valid/legacy_cnn.pth").path
        let full = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        for n in 0 ..< full.count {
            let region = ByteRegion(Array(full[0 ..< n]))
            XCTAssertThrowsError(try CheckpointReader.read(region: region, file: "cut"), "truncated at \(n)")
        }
    }

    /// Every prefix of every valid fixture (fixtures/valid and fixtures/realworld/files, every
    /// format) is refused with a format or tensor error, or reads to the end (a legacy stream cut
    /// past its last record); never a crash or another kind of error.
    func testEveryPrefixOfEveryFixtureIsRefusedCleanly() throws {
        var files: [URL] = []
        for folder in ["valid", "realworld/files"] {
            let dir = GoldenFixtureTests.fixtures.appendingPathComponent(folder)
            files += try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted().map { dir.appendingPathComponent($0) }
        }
        XCTAssertGreaterThan(files.count, 35)
        for url in files {
            let full = try [UInt8](Data(contentsOf: url))
            let step = max(1, full.count / 400)  // about 400 cuts per file
            for n in stride(from: 0, to: full.count, by: step) {
                let region = ByteRegion(Array(full[0 ..< n]))
                for salvage in [false, true] {
                    do {
                        let c = try CheckpointReader.read(region: region, file: "cut", options: UnpickleOptions(salvage: salvage))
                        for (_, t) in c.tensors { _ = try t.contiguousBytes() }
                    } catch is FormatError {
                    } catch is TensorError {
                    } catch {
                        XCTFail("\(url.lastPathComponent) cut at \(n): \(type(of: error)) \(error)")
                    }
                }
            }
        }
    }
}
