import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// What torch does with each file of fixtures/differential (written by
/// fixtures/differential/generate.py with real torch: object state torch applies, keys Python
/// tells apart, dotted-path collisions, frames, storage classes, tar members, TorchScript
/// archives), and ckpt reporting exactly the same tensors or refusing the file.
final class DifferentialTests: XCTestCase {
    static let folder = GoldenFixtureTests.fixtures.appendingPathComponent("differential")

    func testCkptSeesWhatTorchSeesOrRefuses() throws {
        let data = try Data(contentsOf: Self.folder.appendingPathComponent("expect.json"))
        let expect = try data.withUnsafeBytes { try JSONValue.parse($0) }
        let files = try XCTUnwrap(expect["files"]?.arrayValue)
        XCTAssertGreaterThanOrEqual(files.count, 50)
        var matched = 0, refused = 0
        for f in files {
            let name = try XCTUnwrap(f["file"]?.stringValue)
            let must = f["ckpt_must"]?.stringValue
            let mayMatch = must == "match" || f["ckpt_alternative"] != nil
            let read: Checkpoint
            do {
                read = try CheckpointReader.read(path: Self.folder.appendingPathComponent(name).path)
            } catch {
                XCTAssertNotEqual(must, "match", "\(name): refused, but torch loads it: \(error)")
                XCTAssertTrue(error is FormatError, "\(name): \(error)")
                refused += 1
                continue
            }
            XCTAssertTrue(mayMatch, "\(name): read, but torch refuses it (\(f["torch"]?["weights_only_true"]?.stringValue ?? ""))")
            guard mayMatch else { continue }
            let theirs = f["torch_view"]?["tensors"]?.arrayValue ?? []
            let ours = read.tensors
            XCTAssertEqual(ours.map(\.path), theirs.compactMap { $0["name"]?.stringValue }, "\(name): tensor names in order")
            for ((p, t), e) in zip(ours, theirs) {
                XCTAssertEqual(t.dtype.rawValue, e["dtype"]?.stringValue, "\(name): \(p)")
                XCTAssertEqual(t.shape, e["shape"]?.arrayValue?.compactMap { $0.numberValue?.intValue }, "\(name): \(p)")
                XCTAssertEqual(GoldenFixtureTests.hex(try t.contiguousBytes()), e["values_hex"]?.stringValue, "\(name): \(p) values")
                if read.info.format != .torchscript, let rg = e["requires_grad"] {
                    XCTAssertEqual(t.requiresGrad, rg == .bool(true), "\(name): \(p) requires_grad")
                }
            }
            matched += 1
        }
        XCTAssertGreaterThan(matched, 20)
        XCTAssertGreaterThan(refused, 10)
    }
}
