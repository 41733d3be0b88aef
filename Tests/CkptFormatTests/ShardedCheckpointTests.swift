@testable import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Sharded and distributed checkpoints (fixtures/shards, written by fixtures/shards/generate.py
/// with torch, safetensors and huggingface_hub): each read as one checkpoint equals what the
/// reference loaders gave (fixtures/shards/expected.json); the broken variants are refused in one
/// line naming the index, shard or key.
final class ShardedCheckpointTests: XCTestCase {
    static let shards = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/shards")

    static func expected() throws -> JSONValue {
        let data = try Data(contentsOf: shards.appendingPathComponent("expected.json"))
        return try data.withUnsafeBytes { try JSONValue.parse($0) }
    }

    static func path(_ p: String) -> String { shards.appendingPathComponent(p).path }

    static func sha256(_ t: Tensor) throws -> String {
        var h = SHA256()
        try t.withContiguousBytes { h.update($0) }
        return h.finalizeHex()
    }

    /// Python's repr of a leaf value, for the values dcp_to_torch_save recorded.
    static func pyRepr(_ v: Value) -> String {
        switch v {
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .float(f): return "\(f)"
        case let .string(s): return "'\(s)'"
        default: return "<\(v.typeName)>"
        }
    }

    /// Leaf values with dotted paths, as the generator's `flat` lists them.
    static func values(_ c: Checkpoint) -> [(String, String)] {
        var out: [(String, String)] = []
        Checkpoint.walk(c.root, path: "") { p, v in
            switch v {
            case .dict, .list, .tuple, .set, .tensor, .object: break
            default: out.append((p, pyRepr(v)))
            }
        }
        return out
    }

    func assertMatches(_ c: Checkpoint, _ e: JSONValue?, file: StaticString = #filePath, line: UInt = #line) throws {
        let want = try XCTUnwrap(e?["tensors"]?.arrayValue, file: file, line: line)
        let got = c.tensors
        XCTAssertEqual(got.map(\.path), want.compactMap { $0["name"]?.stringValue }, "tensor names in order", file: file, line: line)
        for (g, w) in zip(got, want) {
            XCTAssertEqual(g.tensor.dtype.rawValue, w["dtype"]?.stringValue, g.path, file: file, line: line)
            XCTAssertEqual(g.tensor.shape, w["shape"]?.arrayValue?.compactMap { $0.numberValue?.intValue }, g.path, file: file, line: line)
            XCTAssertEqual(try Self.sha256(g.tensor), w["sha256"]?.stringValue, "\(g.path): bytes differ from torch's", file: file, line: line)
        }
        let wantValues = (e?["values"]?.arrayValue ?? []).map { ($0["name"]?.stringValue ?? "", $0["repr"]?.stringValue ?? "") }
        let gotValues = Self.values(c)
        XCTAssertEqual(gotValues.map(\.0), wantValues.map(\.0), "value paths", file: file, line: line)
        XCTAssertEqual(gotValues.map(\.1), wantValues.map(\.1), "values", file: file, line: line)
    }

    func testHFSafetensorsFolderEqualsTransformersMerge() throws {
        let e = try Self.expected()["hf_safetensors"]
        let c = try CheckpointSource.read(path: Self.path("hf_safetensors"))
        try assertMatches(c, e)
        XCTAssertEqual(c.info.format, .safetensors)
        XCTAssertEqual(c.info.metadata.first { $0.key == "total_size" }?.value, e?["metadata"]?["total_size"]?.numberValue?.text)
        XCTAssertEqual(c.info.assembledFrom, "3 safetensors shards listed in model.safetensors.index.json")
    }

    func testHFBinIndexEqualsTransformersMerge() throws {
        let e = try Self.expected()["hf_bin"]
        let c = try CheckpointSource.read(path: Self.path("hf_bin/pytorch_model.bin.index.json"))
        try assertMatches(c, e)
        XCTAssertEqual(c.info.format, .zip)
        // a folder with one index reads the same
        XCTAssertEqual(try CheckpointSource.read(path: Self.path("hf_bin")).tensors.map(\.path), c.tensors.map(\.path))
    }

    func testDCPFolderEqualsDcpToTorchSave() throws {
        let c = try CheckpointSource.read(path: Self.path("dcp"))
        try assertMatches(c, try Self.expected()["dcp"])
        // nested as it was saved: model and optim are dicts, param_groups a list
        XCTAssertNotNil(c.root.dictValue?["model"]?.dictValue)
        XCTAssertNotNil(c.root.dictValue?["optim"]?.dictValue?["param_groups"]?.sequenceValue)
        // the .metadata file names the same checkpoint
        XCTAssertEqual(try CheckpointSource.read(path: Self.path("dcp/.metadata")).tensors.count, c.tensors.count)
    }

    func testDCPWithChunksFromTwoRanksIsReassembled() throws {
        let c = try CheckpointSource.read(path: Self.path("dcp_chunked"))
        try assertMatches(c, try Self.expected()["dcp_chunked"])
        XCTAssertEqual(c.info.assembledFrom, "torch.distributed.checkpoint folder: 4 entries, 3 tensors in 5 chunks over 2 .distcp files")
    }

    func testScatterPlacesChunksByOffsets() {
        // a [3, 4] int8 tensor from two column chunks: [:, 0:1] and [:, 1:4]
        var full = [UInt8](repeating: 0, count: 12)
        let left: [UInt8] = [1, 5, 9], right: [UInt8] = [2, 3, 4, 6, 7, 8, 10, 11, 12]
        full.withUnsafeMutableBytes { dst in
            left.withUnsafeBytes { DistributedCheckpointReader.scatter($0, into: dst, offsets: [0, 0], sizes: [3, 1], strides: [4, 1], itemSize: 1) }
            right.withUnsafeBytes { DistributedCheckpointReader.scatter($0, into: dst, offsets: [0, 1], sizes: [3, 3], strides: [4, 1], itemSize: 1) }
        }
        XCTAssertEqual(full, Array(1 ... 12))
    }

    // MARK: broken variants

    func assertRefused(_ folder: String, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            let c = try CheckpointSource.read(path: Self.path("broken/" + folder))
            XCTFail("read \(c.tensors.count) tensors from \(folder), expected an error", file: file, line: line)
        } catch let e as FormatError {
            XCTAssertFalse(e.description.contains("\n"), file: file, line: line)
            for m in mentions { XCTAssertTrue(e.description.contains(m), "\(e.description) lacks \(m)", file: file, line: line) }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    func testBrokenShardIndexesAreRefusedNamingIndexShardAndKey() throws {
        let b = try XCTUnwrap(Self.expected()["broken"])
        let missing = try XCTUnwrap(b["missing_shard"]?.stringValue)
        assertRefused("missing_shard", mentions: ["model.safetensors.index.json", missing, "missing"])
        assertRefused("absent_from_shard", mentions: ["ghost.weight", "absent from its shard"])
        assertRefused("not_in_weight_map", mentions: ["head.weight", "does not list"])
        assertRefused("duplicate_key", mentions: [try XCTUnwrap(b["duplicate_key"]?.stringValue), "two shards"])
        assertRefused("escaping_path", mentions: ["head.weight", "../", "escaping"])
        assertRefused("absolute_path", mentions: ["/etc/passwd", "absolute"])
        assertRefused("two_indexes", mentions: ["2 shard indexes"])
    }

    func testBrokenDCPFoldersAreRefused() {
        assertRefused("dcp_truncated", mentions: ["__0_0.distcp", "past the end"])
        assertRefused("dcp_missing_file", mentions: ["__0_0.distcp", "No such file"])
        assertRefused("dcp_hostile_metadata", mentions: [".metadata", "os.system", "not allowed"])
    }

    func testShardPathsMustStayInTheFolder() {
        for bad in ["../x.safetensors", "/abs.safetensors", "a/../../b", "", "a//b", "..\\x"] {
            XCTAssertThrowsError(try ShardIndex.checkShardPath(bad, key: "k", index: "i.json"), bad)
        }
        XCTAssertNoThrow(try ShardIndex.checkShardPath("model-00001-of-00002.safetensors", key: "k", index: "i.json"))
        XCTAssertNoThrow(try ShardIndex.checkShardPath("sub/model.safetensors", key: "k", index: "i.json"))
    }
}
