import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// A file too large to map whole is opened as an unmapped window: zip and safetensors files are
/// then read with pread (end records, central directory, local headers, header) and each record
/// is mapped alone when its bytes are needed. What ckpt reads that way must be exactly what it
/// reads from a whole mapping, for every fixture, valid or hostile.
final class WindowedReadTests: XCTestCase {
    static let folders = ["valid", "realworld/files", "differential/files", "hostile/files"]

    static func files() throws -> [String] {
        var out: [String] = []
        for folder in folders {
            let dir = GoldenFixtureTests.fixtures.appendingPathComponent(folder)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { continue }
            // the billion-laughs, million-opcode and 100k-deep pickles test the unpickler, whose
            // input bytes are the same either way; they take seconds each in a debug build
            let slow = ["laughs", "million_opcodes", "deep_"]
            for n in names.sorted() where !n.hasSuffix(".json") && !n.hasSuffix(".md") && !n.hasSuffix(".py") && !n.hasSuffix(".txt")
                && !slow.contains(where: { n.contains($0) }) {
                out.append(dir.appendingPathComponent(n).path)
            }
        }
        return out
    }

    /// What a read gives, in a form two reads can be compared by: every tensor's path, dtype,
    /// shape and bytes (or its read error), the format and the globals; or the error.
    private func outcome(_ path: String, whole: Bool, salvage: Bool) -> String {
        do {
            let region = try ByteRegion.open(path: path, whole: whole)
            let c = try CheckpointReader.read(region: region, file: path, options: UnpickleOptions(salvage: salvage))
            var lines = ["format \(c.info.format.rawValue)", "globals \(c.info.globals)", "warnings \(c.info.warnings)"]
            for (p, t) in c.tensors {
                let data: String
                do {
                    let bytes = try t.contiguousBytes()
                    data = "\(bytes.count) bytes, sum \(bytes.reduce(0) { $0 &+ Int($1) }), hash \(bytes.reduce(UInt64(1469598103934665603)) { ($0 ^ UInt64($1)) &* 1099511628211 })"
                } catch {
                    data = "error \(error)"
                }
                lines.append("\(p) \(t.dtype.rawValue) \(t.shape) \(t.strides) \(t.storageOffset): \(data)")
            }
            return lines.joined(separator: "\n")
        } catch {
            return "error \(error)"
        }
    }

    func testEveryFixtureReadsTheSameFromAWindowAsFromAWholeMapping() throws {
        let files = try Self.files()
        XCTAssertGreaterThan(files.count, 290)
        var compared = 0
        for f in files {
            for salvage in [false, true] {
                let mapped = outcome(f, whole: true, salvage: salvage)
                let windowed = outcome(f, whole: false, salvage: salvage)
                XCTAssertEqual(windowed, mapped, "\(f) (salvage \(salvage))")
                compared += 1
            }
        }
        XCTAssertEqual(compared, files.count * 2)
    }

    func testAWindowMapsOnlyTheRecordsItReads() throws {
        let path = GoldenFixtureTests.fixtures.appendingPathComponent("valid/cnn.pth").path
        let region = try ByteRegion.open(path: path, whole: false)
        XCTAssertFalse(region.isMapped)
        let c = try CheckpointReader.read(region: region, file: path)
        // reading the structure mapped nothing of the file
        XCTAssertFalse(region.isMapped)
        let t = try XCTUnwrap(c.tensors.first?.tensor)
        // a record read with pread maps nothing either; one read in place maps just itself
        var copy = [UInt8](repeating: 0, count: t.byteCount)
        try copy.withUnsafeMutableBytes { try t.copyContiguousBytes(into: $0) }
        let slice = try t.storage.slice()
        XCTAssertFalse(slice.region.isMapped)
        XCTAssertEqual(try t.withContiguousBytes { Array($0) }, copy)
        XCTAssertTrue(slice.region.isMapped)
        XCTAssertEqual(slice.region.count, t.storage.byteCount, "the window is the record, not the file")
        XCTAssertFalse(region.isMapped)
    }
}
