import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Files torch's weights_only loader refuses for a class (fixtures/salvage, written by its generator
/// with real torch): without `--salvage` ckpt refuses them naming the class, as torch does; with it
/// (and in `scan`) they read as inert data with the values torch's full loader gives. A legacy
/// whole-module file (its class arrives through the persistent id) and a `defaultdict` filled by
/// SETITEMS were "malformed" under salvage.
final class SalvageTests: XCTestCase {
    static let folder = GoldenFixtureTests.fixtures.appendingPathComponent("salvage")

    static func expected() throws -> [String: JSONValue] {
        let data = try Data(contentsOf: folder.appendingPathComponent("expected.json"))
        let json = try data.withUnsafeBytes { try JSONValue.parse($0) }
        guard case let .object(files)? = json["files"] else { throw XCTSkip("no files in expected.json") }
        return Dictionary(uniqueKeysWithValues: files.map { ($0.key, $0.value) })
    }

    func testRefusedLikeTorchThenReadUnderSalvage() throws {
        for (name, e) in try Self.expected() {
            let path = Self.folder.appendingPathComponent("files").appendingPathComponent(name).path
            let torchSays = try XCTUnwrap(e["weights_only"]?.stringValue)
            XCTAssertTrue(torchSays.contains("Unsupported global"), "\(name): \(torchSays)")
            XCTAssertThrowsError(try CheckpointReader.read(path: path)) { error in
                XCTAssertEqual((error as? FormatError)?.kind, .refused, "\(name): \(error)")
            }
            let ckpt = try CheckpointReader.read(path: path, options: UnpickleOptions(salvage: true))
            XCTAssertFalse(ckpt.info.isWeightsOnlyLoadable, name)
            XCTAssertFalse(ckpt.info.disallowedGlobals.isEmpty, name)
            guard case let .object(want)? = e["tensors"] else { return XCTFail("\(name): no tensors") }
            XCTAssertEqual(ckpt.tensors.map(\.path).sorted(), want.map(\.key).sorted(), name)
            for (p, t) in ckpt.tensors {
                let values = want.first { $0.key == p }?.value.arrayValue?.compactMap { $0.numberValue?.doubleValue }
                XCTAssertEqual(try t.doubles(), values, "\(name): \(p)")
            }
        }
    }

    func testLegacyWholeModuleKeepsItsClassName() throws {
        let path = Self.folder.appendingPathComponent("files/whole_module_legacy.pth").path
        let ckpt = try CheckpointReader.read(path: path, options: UnpickleOptions(salvage: true))
        guard case let .object(o) = ckpt.root else { return XCTFail("root is a \(ckpt.root.typeName)") }
        XCTAssertEqual(o.global, QualifiedName("__main__", "Net"))
    }

    func testDefaultDictItemsBecomeItsState() throws {
        let path = Self.folder.appendingPathComponent("files/defaultdict.pth").path
        let ckpt = try CheckpointReader.read(path: path, options: UnpickleOptions(salvage: true))
        guard case let .object(o)? = ckpt.root.dictValue?["vocab"], case let .dict(state)? = o.state else {
            return XCTFail("vocab is not an object with items")
        }
        XCTAssertEqual(o.global, QualifiedName("collections", "defaultdict"))
        XCTAssertEqual(state.items.compactMap { $0.key.stringValue }, ["a", "b"])
        XCTAssertEqual(state.items.compactMap { $0.value.intValue }, [1, 2])
    }
}
