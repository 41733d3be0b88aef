import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Every fixture in fixtures/valid and fixtures/realworld/files, read by ckpt, compared value for
/// value with what torch saw (fixtures/golden/*.json and fixtures/realworld/golden/*.json, written
/// by fixtures/generate.py and fixtures/realworld/generate.py with real torch).
final class GoldenFixtureTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("fixtures")

    struct Golden {
        let json: JSONValue
        let path: String
        var file: String { Golden.str(json["file"]) ?? "" }
        static func str(_ v: JSONValue?) -> String? { v?.stringValue }
    }

    static func goldens() throws -> [Golden] {
        var out: [Golden] = []
        for folder in ["golden", "realworld/golden"] {
            let dir = fixtures.appendingPathComponent(folder)
            let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }.sorted()
            for n in names {
                let data = try Data(contentsOf: dir.appendingPathComponent(n))
                let v = try data.withUnsafeBytes { try JSONValue.parse($0) }
                if v["file"] != nil { out.append(Golden(json: v, path: n)) }  // pairs.json has another schema
            }
        }
        return out
    }

    /// True for goldens torch recorded after OmegaConf rebuilt its objects: compared by tensors only.
    static func tensorsOnly(_ g: Golden) -> Bool { g.file.contains("omegaconf") }

    /// True when torch's loaded object refers to itself somewhere (a reference cycle).
    static func hasCycle(_ g: Golden) -> Bool {
        (g.json["non_tensors"]?.arrayValue ?? []).contains { $0["type"]?.stringValue == "cycle" }
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    static func ints(_ v: JSONValue?) -> [Int]? { v?.arrayValue?.compactMap { $0.numberValue?.intValue } }

    static func read(_ g: Golden) throws -> Checkpoint {
        let path = fixtures.appendingPathComponent(g.file).path
        let salvage = g.json["weights_only_loadable"] == .bool(false) && g.json["format"]?.stringValue == "zip" && !g.file.contains("proto4")
        return try CheckpointReader.read(path: path, options: UnpickleOptions(salvage: salvage))
    }

    func testGoldenFilesExist() throws {
        XCTAssertGreaterThanOrEqual(try Self.goldens().count, 40, "fixtures/golden or fixtures/realworld/golden is missing files; run the generators")
    }

    func testEveryFixtureMatchesTorch() throws {
        for g in try Self.goldens() {
            let ckpt: Checkpoint
            do { ckpt = try Self.read(g) } catch {
                XCTFail("\(g.file): \(error)")
                continue
            }
            XCTAssertEqual(ckpt.info.format.rawValue, g.json["format"]?.stringValue, g.file)
            if let p = g.json["archive_prefix"]?.stringValue { XCTAssertEqual(ckpt.info.archivePrefix, p, g.file) }
            XCTAssertEqual(ckpt.info.isWeightsOnlyLoadable, g.json["weights_only_loadable"] == .bool(true), "\(g.file): weights_only verdict")
            let ours = ckpt.tensors
            let theirs = g.json["tensors"]?.arrayValue ?? []
            XCTAssertEqual(ours.map(\.path), theirs.compactMap { $0["name"]?.stringValue }, "\(g.file): tensor names and order")
            var byName: [String: Tensor] = [:]
            for (p, t) in ours { byName[p] = t }
            for t in theirs {
                guard let name = t["name"]?.stringValue, let mine = byName[name] else { continue }
                let where_ = "\(g.file): \(name)"
                XCTAssertEqual(mine.dtype.rawValue, t["dtype"]?.stringValue, where_)
                XCTAssertEqual(mine.shape, Self.ints(t["shape"]), where_)
                if ckpt.info.format != .safetensors {
                    XCTAssertEqual(mine.strides, Self.ints(t["stride"]), where_)
                    XCTAssertEqual(mine.storageOffset, t["storage_offset"]?.numberValue?.intValue, where_)
                    if let key = t["storage_key"]?.stringValue { XCTAssertEqual(mine.storage.key, key, where_) }
                }
                XCTAssertEqual(mine.isParameter, t["is_parameter"] == .bool(true), where_)
                XCTAssertEqual(Self.hex(try mine.contiguousBytes()), t["values_hex"]?.stringValue, "\(where_): values")
            }
            for group in g.json["shared"]?.arrayValue ?? [] {
                let names = group.arrayValue?.compactMap(\.stringValue) ?? []
                let ids = Set(names.compactMap { byName[$0].map { ObjectIdentifier($0.storage) } })
                XCTAssertEqual(ids.count, 1, "\(g.file): \(names) should share one storage")
            }
            var leaves: [String: Value] = [:]
            Checkpoint.walk(ckpt.root, path: "") { p, v in leaves[p] = v }
            for nt in Self.tensorsOnly(g) ? [] : g.json["non_tensors"]?.arrayValue ?? [] {
                guard let p = nt["path"]?.stringValue, let repr = nt["repr"]?.stringValue, let type = nt["type"]?.stringValue else { continue }
                guard let v = leaves[p] else { XCTFail("\(g.file): missing value at \(p)"); continue }
                switch (type, v) {
                case let ("int", .int(i)): XCTAssertEqual(String(i), repr, "\(g.file): \(p)")
                case let ("float", .float(f)): XCTAssertEqual(f, Double(repr), "\(g.file): \(p)")
                case let ("str", .string(s)): XCTAssertEqual(s, repr, "\(g.file): \(p)")
                case let ("bool", .bool(b)): XCTAssertEqual(b ? "True" : "False", repr, "\(g.file): \(p)")
                case ("None", .none): break
                case let ("cycle", .reference(to)): XCTAssertEqual(to, repr, "\(g.file): \(p) refers back to")
                default: XCTFail("\(g.file): \(p) is \(v.typeName), torch saw \(type) \(repr)")
                }
            }
            if case let .object(meta)? = g.json["metadata"] {
                let ours = ckpt.root.dictValue?.attribute("_metadata")?.dictValue
                XCTAssertEqual(ours?.items.map { $0.key.stringValue ?? "?" }, meta.map(\.key), "\(g.file): _metadata keys")
                for (k, v) in meta {
                    let version = ours?[k]?.dictValue?["version"]?.intValue
                    XCTAssertEqual(version, v["version"]?.numberValue?.intValue, "\(g.file): _metadata[\(k)]")
                }
            }
        }
    }

    /// Writing every torch-loadable fixture back as .pth and as .safetensors keeps every value,
    /// every geometry (pth) and every shared storage (pth).
    func testRoundTripKeepsValuesGeometryAndSharing() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-rt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        for g in try Self.goldens() where g.json["weights_only_loadable"] == .bool(true) && !Self.hasCycle(g) {
            let ckpt = try Self.read(g)
            let out = tmp.appendingPathComponent("rt.pth").path
            try CheckpointWriter.write(ckpt, to: out)
            let back = try CheckpointReader.read(path: out)
            XCTAssertTrue(back.info.isWeightsOnlyLoadable, g.file)
            XCTAssertEqual(back.info.archivePrefix, "rt")
            let a = ckpt.tensors, b = back.tensors
            XCTAssertEqual(a.map(\.path), b.map(\.path), g.file)
            for ((p, x), (_, y)) in zip(a, b) {
                XCTAssertEqual(x.shape, y.shape, "\(g.file): \(p)")
                XCTAssertEqual(x.dtype, y.dtype, "\(g.file): \(p)")
                if x.storage.byteOrder == .little {
                    XCTAssertEqual(x.strides, y.strides, "\(g.file): \(p)")
                    XCTAssertEqual(x.storageOffset, y.storageOffset, "\(g.file): \(p)")
                }
                XCTAssertEqual(try x.contiguousBytes(), try y.contiguousBytes(), "\(g.file): \(p)")
            }
            let shareA = Dictionary(grouping: a.indices, by: { ObjectIdentifier(a[$0].tensor.storage) }).values.map { Set($0) }
            let shareB = Dictionary(grouping: b.indices, by: { ObjectIdentifier(b[$0].tensor.storage) }).values.map { Set($0) }
            XCTAssertEqual(Set(shareA), Set(shareB), "\(g.file): sharing")

            let safe = a.allSatisfy { $0.tensor.dtype.safetensorsCode != nil }
            if safe {
                let st = tmp.appendingPathComponent("rt.safetensors").path
                try CheckpointWriter.write(ckpt, to: st)
                let s = try CheckpointReader.read(path: st)
                var values: [String: [UInt8]] = [:]
                for (p, t) in s.tensors { values[p] = try t.contiguousBytes() }
                for (p, t) in a { XCTAssertEqual(values[p], try t.contiguousBytes(), "\(g.file): \(p) via safetensors") }
            }
        }
    }
}
