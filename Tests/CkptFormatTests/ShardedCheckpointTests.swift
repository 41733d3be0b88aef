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
        // a one-chunk tensor's bytes stay in the mapped .distcp file (not copied to the heap)
        XCTAssertGreaterThanOrEqual(try c.tensors[0].tensor.storage.slice().region.fileDescriptor, 0)
        // the .metadata file names the same checkpoint
        XCTAssertEqual(try CheckpointSource.read(path: Self.path("dcp/.metadata")).tensors.count, c.tensors.count)
    }

    func testDCPWithChunksFromTwoRanksIsReassembled() throws {
        let c = try CheckpointSource.read(path: Self.path("dcp_chunked"))
        try assertMatches(c, try Self.expected()["dcp_chunked"])
        XCTAssertEqual(c.info.assembledFrom, "torch.distributed.checkpoint folder: 4 entries, 3 tensors in 5 chunks over 2 .distcp files")
    }

    /// Every writer and option of torch 2.15 a user meets (fixtures/shards/write_dcp_variants.py):
    /// one file per item, several writer threads, async_save, FSDP2 and FSDP1 (SHARDED_STATE_DICT)
    /// model + optimizer state from two ranks, the legacy ShardedTensor, HuggingFaceStorageWriter's
    /// index, its per-rank safetensors, and their consolidation into standard safetensors.
    func testDCPWritersAndOptionsReadAsTorchLoadsThem() throws {
        let variants = try XCTUnwrap(Self.expected()["dcp_variants"]?.objectValue)
        XCTAssertEqual(variants.map(\.key).sorted(), ["async_save", "fsdp1", "fsdp2", "hf_consolidated", "hf_consolidated/sharded", "hf_distributed",
                                                      "hf_storage", "per_item_files", "sharded_tensor", "threads"])
        for (name, e) in variants {
            let c = try CheckpointSource.read(path: Self.path("dcp_variants/" + name))
            try assertMatches(c, e)
        }
        let fsdp = try CheckpointSource.read(path: Self.path("dcp_variants/fsdp2"))
        XCTAssertEqual(fsdp.info.assembledFrom, "torch.distributed.checkpoint folder: 28 entries, 16 tensors in 28 chunks over 2 .distcp files")
        let hf = try CheckpointSource.read(path: Self.path("dcp_variants/hf_distributed"))
        XCTAssertEqual(hf.info.assembledFrom, "DCP-sharded safetensors folder (HuggingFaceStorageWriter): 2 tensors in 4 chunks over 2 .safetensors files")
        XCTAssertEqual(try CheckpointSource.kind(of: Self.path("dcp_variants/hf_distributed")), .distributedSafetensors(Self.path("dcp_variants/hf_distributed")))
        // a folder named with trailing slashes (as a shell completes it) is the same folder
        XCTAssertEqual(try CheckpointSource.kind(of: Self.path("dcp_variants/hf_distributed") + "//"), .distributedSafetensors(Self.path("dcp_variants/hf_distributed")))
        XCTAssertEqual(try CheckpointSource.kind(of: Self.path("dcp_variants/fsdp2") + "/"), .distributed(Self.path("dcp_variants/fsdp2")))
        XCTAssertEqual(try CheckpointSource.read(path: Self.path("dcp_variants/per_item_files")).info.assembledFrom,
                       "torch.distributed.checkpoint folder: 7 entries, 4 tensors in 4 chunks over 7 .distcp files")
    }

    /// `dcp.async_save` writes what `dcp.save` writes: the generator saved the same state both ways
    /// and found the same files with the same bytes (metadata apart from the folder's name), so
    /// ckpt reads it as one folder of one rank's `.distcp`.
    func testDCPAsyncSaveHasTheLayoutOfSave() throws {
        let layout = try XCTUnwrap(Self.expected()["dcp_async_layout"])
        for flag in ["same_files_as_save", "same_bytes_as_save"] {
            guard case .bool(true)? = layout[flag] else { return XCTFail("\(flag): \(String(describing: layout[flag]))") }
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.path("dcp_variants/async_save")).sorted()
        XCTAssertEqual(files, try XCTUnwrap(layout["files"]?.arrayValue?.compactMap(\.stringValue)))
        XCTAssertEqual(try CheckpointSource.kind(of: Self.path("dcp_variants/async_save")), .distributed(Self.path("dcp_variants/async_save")))
        XCTAssertEqual(try CheckpointSource.read(path: Self.path("dcp_variants/async_save")).info.assembledFrom,
                       "torch.distributed.checkpoint folder: 7 entries, 4 tensors in 4 chunks over 1 .distcp file")
    }

    /// `HuggingFaceStorageWriter(save_distributed=True, enable_consolidation=True)` leaves standard
    /// safetensors and their index in the folder, the per-rank shards in `sharded/`: the folder, its
    /// index and its one file read as safetensors' `load_file` reads them; `sharded/` as DCP's
    /// reader assembles it, to the same tensors.
    func testDCPConsolidatedSafetensorsReadAsSafetensorsLoadsThem() throws {
        let e = try XCTUnwrap(Self.expected()["dcp_variants"]?["hf_consolidated"])
        let folder = Self.path("dcp_variants/hf_consolidated")
        for p in [folder, folder + "/model.safetensors.index.json", folder + "/model-00001-of-00001.safetensors"] {
            try assertMatches(try CheckpointSource.read(path: p), e)
        }
        XCTAssertEqual(try CheckpointSource.read(path: folder).info.assembledFrom, "1 safetensors shard listed in model.safetensors.index.json")
        let whole = try CheckpointSource.read(path: folder)
        let sharded = try CheckpointSource.read(path: folder + "/sharded")
        XCTAssertEqual(sharded.info.assembledFrom, "DCP-sharded safetensors folder (HuggingFaceStorageWriter): 3 tensors in 6 chunks over 2 .safetensors files")
        let byName = Dictionary(uniqueKeysWithValues: sharded.tensors.map { ($0.path, $0.tensor) })
        XCTAssertEqual(whole.tensors.count, 3)
        for (name, t) in whole.tensors {
            let other = try XCTUnwrap(byName[name], name)
            XCTAssertEqual(other.shape, t.shape, name)
            XCTAssertEqual(try other.contiguousBytes(), try t.contiguousBytes(), name)
        }
    }

    func testDCPVariantsTorchCannotConvertAreRefusedInOneLine() throws {
        let refused = try XCTUnwrap(Self.expected()["dcp_variants_refused"])
        func refusal(_ folder: String) throws -> String {
            do {
                let c = try CheckpointSource.read(path: Self.path(folder))
                XCTFail("read \(c.tensors.count) tensors from \(folder)")
                return ""
            } catch let e as FormatError {
                XCTAssertFalse(e.description.contains("\n"))
                return e.description
            }
        }
        // compressed items: which extension, and how to get a file ckpt reads
        let zstd = try refusal("dcp_variants/zstd")
        let keys = try XCTUnwrap(refused["zstd"]?["keys"]?.arrayValue?.compactMap(\.stringValue))
        XCTAssertTrue(keys.contains { zstd.contains("'\($0)'") }, zstd)
        for m in ["zstd/__0_0.distcp", try XCTUnwrap(refused["zstd"]?["says"]?.stringValue), "without _extensions"] {
            XCTAssertTrue(zstd.contains(m), "\(zstd) lacks \(m)")
        }
        // dcp.save(use_collectives=False): per-rank metadata only
        let perRank = try refusal("dcp_variants/per_rank_metadata")
        for m in ["per_rank_metadata/__0.metadata", "__1.metadata", "use_collectives=False", "no global .metadata"] {
            XCTAssertTrue(perRank.contains(m), "\(perRank) lacks \(m)")
        }
        // FileSystemWriter(serialization_format=SAFETENSORS): torch's FileSystemReader fails too
        XCTAssertNotNil(refused["safetensors_format"]?["torch"]?.stringValue)
        let st = try refusal("dcp_variants/safetensors_format")
        for m in ["safetensors_format/__0_0.distcp", "serialization_format=SAFETENSORS", "HuggingFaceStorageWriter"] {
            XCTAssertTrue(st.contains(m), "\(st) lacks \(m)")
        }
        // DCP-sharded safetensors that do not tile a tensor or do not place one
        let missing = try refusal("broken/hf_distributed_missing_rank")
        XCTAssertTrue(missing.contains("cols.weight") && missing.contains("cover 9 of 21 elements"), missing)
        let badInfo = try refusal("broken/hf_distributed_bad_info")
        for m in ["shard-00002-model-00001-of-00001.safetensors", "rows.weight", "saved_offsets"] {
            XCTAssertTrue(badInfo.contains(m), "\(badInfo) lacks \(m)")
        }
    }

    func testDistributedSafetensorsFileNames() {
        XCTAssertTrue(DistributedSafetensorsReader.isShardFileName("shard-00001-model-00001-of-00001.safetensors"))
        XCTAssertFalse(DistributedSafetensorsReader.isShardFileName("model-00001-of-00002.safetensors"))
        XCTAssertFalse(DistributedSafetensorsReader.isShardFileName("shard-1-model-00001-of-00001.safetensors"))
        XCTAssertFalse(DistributedSafetensorsReader.isShardFileName("shard-00001-model-00001-of-0000x.safetensors"))
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

    /// The decoder the fuzz target feeds: from the `.metadata` bytes alone, the entries the folder
    /// reads, in order; a hostile one refused as the folder is; and lower budgets apply.
    func testDCPMetadataDecodesFromItsBytesAlone() throws {
        let folder = try CheckpointSource.read(path: Self.path("dcp_chunked"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Self.path("dcp_chunked/.metadata")))
        let names = try bytes.withUnsafeBytes { try DistributedCheckpointReader.entryNames(metadata: $0, file: ".metadata") }
        XCTAssertEqual(names.count, 4)
        XCTAssertEqual(Set(folder.tensors.map(\.path)).subtracting(names), [])
        let hostile = try Data(contentsOf: URL(fileURLWithPath: Self.path("broken/dcp_hostile_metadata/.metadata")))
        XCTAssertThrowsError(try hostile.withUnsafeBytes { try DistributedCheckpointReader.entryNames(metadata: $0, file: "h") }) { e in
            XCTAssertTrue("\(e)".contains("os.system"), "\(e)")
        }
        var tiny = UnpickleOptions()
        tiny.maxObjects = 10
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try DistributedCheckpointReader.entryNames(metadata: $0, file: "m", budgets: tiny) }) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .limit, "\(e)")
        }
    }

    func testBrokenDCPFoldersAreRefused() {
        assertRefused("dcp_truncated", mentions: ["__0_0.distcp", "past the end"])
        assertRefused("dcp_missing_file", mentions: ["__0_0.distcp", "No such file"])
        assertRefused("dcp_hostile_metadata", mentions: [".metadata", "os.system", "not allowed"])
        assertRefused("dcp_gap", mentions: ["model.rows.weight", "cover 15 of 30 elements"])
        assertRefused("dcp_escaping", mentions: ["model.bias", "escaping"])
        assertRefused("dcp_wrong_dtype", mentions: ["model.cols.weight", "float64", "float16"])
    }

    func testShardPathsMustStayInTheFolder() {
        for bad in ["../x.safetensors", "/abs.safetensors", "a/../../b", "", "a//b", "..\\x"] {
            XCTAssertThrowsError(try ShardIndex.checkShardPath(bad, key: "k", index: "i.json"), bad)
        }
        XCTAssertNoThrow(try ShardIndex.checkShardPath("model-00001-of-00002.safetensors", key: "k", index: "i.json"))
        XCTAssertNoThrow(try ShardIndex.checkShardPath("sub/model.safetensors", key: "k", index: "i.json"))
    }
}

/// Writing shards: sizes parsed as transformers parses them, the split huggingface_hub makes, and
/// a sharded round trip that gives back every tensor bit for bit.
final class ShardedWriterTests: XCTestCase {
    func testSizesParseAsTransformersParsesThem() throws {
        let sizes = try XCTUnwrap(ShardedCheckpointTests.expected()["sizes"]?.objectValue)
        XCTAssertEqual(sizes.count, 8)
        for (text, bytes) in sizes {
            XCTAssertEqual(ShardSize.parse(text), bytes.numberValue?.intValue, text)
        }
        XCTAssertEqual(ShardSize.parse("2GB"), 2_000_000_000)
        XCTAssertEqual(ShardSize.parse("1GiB"), 1 << 30)
        XCTAssertEqual(ShardSize.parse("4096"), 4096)
        for bad in ["", "GB", "1.5GB", "-1GB", "2XB", "1 TB", "ten MB"] { XCTAssertNil(ShardSize.parse(bad), bad) }
    }

    func testSplitEqualsHuggingfaceHubSplit() throws {
        let data = try Data(contentsOf: ShardedCheckpointTests.shards.appendingPathComponent("split_example.json"))
        let e = try data.withUnsafeBytes { try JSONValue.parse($0) }
        let items = try XCTUnwrap(e["sizes"]?.arrayValue).map { pair -> (name: String, size: Int, storage: ObjectIdentifier?) in
            (pair.arrayValue?[0].stringValue ?? "", pair.arrayValue?[1].numberValue?.intValue ?? -1, nil)
        }
        let split = ShardSplit.split(items, maxShardSize: try XCTUnwrap(e["max_shard_size"]?.numberValue?.intValue), pattern: "model{suffix}.safetensors")
        let want = try XCTUnwrap(e["filename_to_tensors"]?.objectValue)
        XCTAssertEqual(split.files.map(\.name), want.map(\.key))
        XCTAssertEqual(split.files.map(\.tensors), want.map { $0.value.arrayValue?.compactMap(\.stringValue) ?? [] })
        XCTAssertEqual(split.totalSize, e["metadata"]?["total_size"]?.numberValue?.intValue)
    }

    func testTensorsSharingAStorageStayInOneBinShard() throws {
        let a = try Tensor(dtype: .uint8, shape: [600], bytes: [UInt8](repeating: 1, count: 600))
        let b = try Tensor(dtype: .uint8, shape: [600], bytes: [UInt8](repeating: 2, count: 600))
        let tied = a // the same storage, as lm_head.weight tied to the embedding
        let items: [(name: String, size: Int, storage: ObjectIdentifier?)] = [
            ("embed", 600, ObjectIdentifier(a.storage)), ("other", 600, ObjectIdentifier(b.storage)), ("head", 600, ObjectIdentifier(tied.storage)),
        ]
        let split = ShardSplit.split(items, maxShardSize: 1000, pattern: "pytorch_model{suffix}.bin")
        XCTAssertEqual(split.files.map(\.tensors), [["embed", "head"], ["other"]])
        XCTAssertEqual(split.files.map(\.name), ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"])
        XCTAssertEqual(split.totalSize, 1200)
    }

    func testStaleFilesMatchHuggingfaceHubPattern() {
        XCTAssertTrue(ShardedCheckpointWriter.isStale("model-00001-of-00004.safetensors", prefix: "model", suffix: ".safetensors"))
        XCTAssertTrue(ShardedCheckpointWriter.isStale("model.safetensors", prefix: "model", suffix: ".safetensors"))
        XCTAssertTrue(ShardedCheckpointWriter.isStale("model.safetensors.index.json", prefix: "model", suffix: ".safetensors"))
        XCTAssertFalse(ShardedCheckpointWriter.isStale("model.safetensors.backup", prefix: "model", suffix: ".safetensors"))
        XCTAssertFalse(ShardedCheckpointWriter.isStale("model-1-of-2.safetensors", prefix: "model", suffix: ".safetensors"))
        XCTAssertFalse(ShardedCheckpointWriter.isStale("config.json", prefix: "model", suffix: ".safetensors"))
    }

    func testShardedRoundTripIsBitIdentical() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-shards-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for source in ["hf_safetensors", "dcp", "dcp_chunked", "hf_bin", "dcp_variants/fsdp2", "dcp_variants/hf_distributed"] {
            let original = try CheckpointSource.read(path: ShardedCheckpointTests.path(source))
            let tensors = original.tensors.map { (name: $0.path, tensor: $0.tensor) }
            for (out, limit) in [(dir + "/\(source)-st", 1000), (dir + "/\(source)-bin/pytorch_model.bin.index.json", 2000)] {
                let result = try ShardedCheckpointWriter.write(tensors, to: out, maxShardSize: limit)
                // one shard is one file and no index (as transformers writes it): read its folder
                let back = try CheckpointSource.read(path: result.index ?? (result.files[0] as NSString).deletingLastPathComponent)
                var gotTensors = back.tensors
                if result.index == nil {
                    // a single safetensors file keeps the writer's dtype-then-name order
                    let order = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })
                    gotTensors.sort { (order[$0.path] ?? 0) < (order[$1.path] ?? 0) }
                }
                XCTAssertEqual(gotTensors.map(\.path), tensors.map(\.name), "\(source) → \(out)")
                for (g, w) in zip(gotTensors, tensors) {
                    XCTAssertEqual(g.tensor.dtype, w.tensor.dtype, g.path)
                    XCTAssertEqual(g.tensor.shape, w.tensor.shape, g.path)
                    XCTAssertEqual(try ShardedCheckpointTests.sha256(g.tensor), try ShardedCheckpointTests.sha256(w.tensor), "\(source) \(g.path)")
                }
                if result.split.isSharded {
                    XCTAssertEqual(back.info.metadata.first { $0.key == "total_size" }?.value, String(result.split.totalSize))
                }
                // every shard but one holding a tensor over the limit stays within it
                for f in result.files where !f.hasSuffix(".json") {
                    let c = try CheckpointReader.read(path: f)
                    let bytes = c.tensors.reduce(0) { $0 + $1.tensor.byteCount }
                    XCTAssertTrue(bytes <= limit || c.tensors.count == 1, "\(f) holds \(bytes) bytes")
                }
            }
        }
        // a second write with another limit replaces the shards and removes the stale ones
        let c = try CheckpointSource.read(path: ShardedCheckpointTests.path("hf_safetensors"))
        let out = dir + "/again"
        _ = try ShardedCheckpointWriter.write(c.tensors.map { (name: $0.path, tensor: $0.tensor) }, to: out, maxShardSize: 1000)
        let second = try ShardedCheckpointWriter.write(c.tensors.map { (name: $0.path, tensor: $0.tensor) }, to: out, maxShardSize: 1 << 30)
        XCTAssertNil(second.index)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), ["model.safetensors"])
        XCTAssertFalse(second.removed.isEmpty)
        XCTAssertEqual(try CheckpointSource.read(path: out).tensors.map(\.path).sorted(), c.tensors.map(\.path).sorted())
    }
}
