import CkptTensor
import Foundation

// A folder written by torch's `HuggingFaceStorageWriter(save_distributed=True)` without
// consolidation (torch 2.15, `distributed/checkpoint/hf_storage.py`): one
// `shard-<rank>-model-<i>-of-<n>.safetensors` per rank and file index, each holding that rank's
// chunks under the tensors' full names, with `__metadata__["DCP_SHARDING_INFO"]` a JSON object
// `{name: {"saved_offsets": [..]}}` giving each chunk's offsets in the full tensor. No `.metadata`
// and no index are written. `HuggingFaceStorageReader.read_metadata` reads every `*.safetensors`
// of the folder, takes a tensor's full size as the largest `offset + size` per dimension over its
// chunks, and assembles the chunks; ckpt does the same, and also checks that the chunks tile the
// full size exactly (torch would leave a gap's elements as whatever `torch.empty` held).

/// Reader for a folder of DCP-sharded safetensors files (`HuggingFaceStorageWriter(save_distributed=True)`).
/// Counterpart: `dcp.load(sd, storage_reader=HuggingFaceStorageReader(folder))`.
public enum DistributedSafetensorsReader {
    /// The `__metadata__` key holding each tensor's chunk offsets.
    static let shardingInfoKey = "DCP_SHARDING_INFO"

    /// True for the file names `HuggingFaceStorageWriter(save_distributed=True)` gives
    /// (`shard-00001-model-00001-of-00001.safetensors`).
    public static func isShardFileName(_ name: String) -> Bool {
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "shard", parts[2] == "model", parts[4] == "of",
              parts[5].hasSuffix(".safetensors") else { return false }
        let numbers = [parts[1], parts[3], parts[5].dropLast(".safetensors".count)]
        return numbers.allSatisfy { $0.count == 5 && $0.allSatisfy { c in c.isASCII && c.isNumber } }
    }

    /// Reads every `*.safetensors` file of `folder` as the chunks of one checkpoint: a `dict` of
    /// full tensors in name order.
    /// - Throws: `FormatError` naming the file and tensor: what the safetensors reader refuses,
    ///   `.corrupt` for DCP_SHARDING_INFO that is not JSON, lacks a tensor or gives offsets of the
    ///   wrong rank, chunks of one tensor that disagree on dtype, overlap or leave a gap.
    public static func read(folder: String) throws -> Checkpoint {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".safetensors") }.sorted()
        } catch {
            throw FormatError(.io, file: folder, "cannot list the folder: \(error.localizedDescription)")
        }
        guard !names.isEmpty else { throw FormatError(.io, file: folder, "holds no .safetensors file") }

        struct Piece {
            var dtype: DType
            var chunk: DistributedChunk
            var tensor: Tensor
            var file: String
        }
        var pieces: [String: [Piece]] = [:]
        for name in names {
            let path = folder + "/" + name
            let c = try CheckpointReader.read(path: path)
            guard c.info.format == .safetensors, let root = c.root.dictValue else {
                throw FormatError(.corrupt, file: path, "is not a safetensors file")
            }
            let info = try shardingInfo(c.info.metadata, file: path)
            for (k, v) in root.items {
                guard let fqn = k.stringValue, case let .tensor(t) = v else { continue }
                let offsets: [Int]
                if let info {
                    guard let o = info[fqn]?["saved_offsets"]?.arrayValue?.map({ $0.numberValue?.intValue }),
                          o.count == t.shape.count, o.allSatisfy({ ($0 ?? -1) >= 0 }) else {
                        throw FormatError(.corrupt, file: path, member: fqn, "\(shardingInfoKey) gives no saved_offsets of rank \(t.shape.count) for '\(fqn)'")
                    }
                    offsets = o.map { $0 ?? 0 }
                } else {
                    offsets = [Int](repeating: 0, count: t.shape.count)
                }
                let storage = DistributedStorageInfo(relativePath: name, offset: 0, length: t.byteCount, transforms: [])
                pieces[fqn, default: []].append(Piece(dtype: t.dtype, chunk: DistributedChunk(offsets: offsets, sizes: t.shape, storage: storage), tensor: t, file: path))
            }
        }

        var items: [(key: Value, value: Value)] = []
        var chunkCount = 0
        for fqn in pieces.keys.sorted() {
            let ps = pieces[fqn] ?? []
            guard let first = ps.first else { continue }
            for p in ps where p.dtype != first.dtype || p.chunk.sizes.count != first.chunk.sizes.count {
                throw FormatError(.corrupt, file: p.file, member: fqn, "chunk of '\(fqn)' is \(p.dtype.rawValue) of rank \(p.chunk.sizes.count), in \(first.file) it is \(first.dtype.rawValue) of rank \(first.chunk.sizes.count)")
            }
            // HuggingFaceStorageReader: size[d] = max over chunks of offset[d] + size[d]
            var size = [Int](repeating: 0, count: first.chunk.sizes.count)
            for p in ps {
                for d in size.indices {
                    guard let end = Checked.add(p.chunk.offsets[d], p.chunk.sizes[d]) else {
                        throw FormatError(.limit, file: p.file, member: fqn, "chunk offsets \(p.chunk.offsets) overflow 64 bits")
                    }
                    size[d] = max(size[d], end)
                }
            }
            let t = try DistributedCheckpointReader.assemble(fqn: fqn, dtype: first.dtype, size: size, chunks: ps.map(\.chunk), metaPath: folder) { storage in
                guard let p = ps.first(where: { $0.chunk.storage == storage }) else {
                    throw FormatError(.corrupt, file: folder, member: fqn, "chunk in \(storage.relativePath) not found")
                }
                let region = try p.tensor.storage.slice().region
                return (region, region, p.tensor)
            }
            chunkCount += ps.count
            items.append((.string(fqn), .tensor(t)))
        }
        var info = FormatInfo(format: .safetensors)
        info.assembledFrom = "DCP-sharded safetensors folder (HuggingFaceStorageWriter): \(items.count) tensors in \(chunkCount) chunks over \(names.count) .safetensors file\(names.count == 1 ? "" : "s")"
        return Checkpoint(root: .dict(PyDict(items: items, kind: .dict)), info: info)
    }

    /// `DCP_SHARDING_INFO` of a file's `__metadata__`, nil when the file has none.
    private static func shardingInfo(_ metadata: [(key: String, value: String)], file: String) throws -> [String: JSONValue]? {
        guard let text = metadata.first(where: { $0.key == shardingInfoKey })?.value else { return nil }
        let v: JSONValue
        do {
            v = try JSONValue.parse(text)
        } catch {
            throw FormatError(.corrupt, file: file, member: "__metadata__", "\(shardingInfoKey) is not JSON: \(error)")
        }
        guard let members = v.objectValue else {
            throw FormatError(.corrupt, file: file, member: "__metadata__", "\(shardingInfoKey) is not a JSON object")
        }
        return Dictionary(members, uniquingKeysWith: { _, last in last })
    }
}
