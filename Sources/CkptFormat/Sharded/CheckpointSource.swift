import CkptTensor
import Foundation

/// Opens whatever a command is pointed at as one checkpoint: a single file (`CheckpointReader`),
/// a Hugging Face shard index (`*.safetensors.index.json`, `*.bin.index.json`), a
/// torch.distributed.checkpoint folder or its `.metadata` file, or a folder holding exactly one
/// of these.
public enum CheckpointSource {
    /// What a path names.
    public enum Kind: Equatable, Sendable {
        /// One checkpoint file.
        case file(String)
        /// A shard index file.
        case shardIndex(String)
        /// A DCP folder (the folder holding `.metadata`).
        case distributed(String)
        /// A folder of DCP-sharded safetensors files (`HuggingFaceStorageWriter(save_distributed=True)`).
        case distributedSafetensors(String)
    }

    /// True for a file name a shard index goes by (`model.safetensors.index.json`,
    /// `pytorch_model.bin.index.json`, variants such as `model.fp16.safetensors.index.json`).
    public static func isShardIndexName(_ name: String) -> Bool {
        let n = name.lowercased()
        return n.hasSuffix(".safetensors.index.json") || n.hasSuffix(".bin.index.json") || n.hasSuffix(".pt.index.json") || n.hasSuffix(".pth.index.json")
    }

    /// Tells what `path` names without reading any tensor: a folder is read through its one
    /// index, its `.metadata`, or its one `model.safetensors` / `pytorch_model.bin`.
    /// - Throws: `FormatError(.io)` for a folder that holds no index and no `.metadata`, or more
    ///   than one index.
    public static func kind(of path: String) throws -> Kind {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return .file(path) }
        let name = (path as NSString).lastPathComponent
        if isDir.boolValue, path.count > 1, path.hasSuffix("/") {
            // `folder/` as a shell completes it: name files inside as `folder/x`, not `folder//x`
            var trimmed = path
            while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
            return try kind(of: trimmed)
        }
        if !isDir.boolValue {
            if isShardIndexName(name) { return .shardIndex(path) }
            if name == ".metadata" {
                let folder = (path as NSString).deletingLastPathComponent
                return .distributed(folder.isEmpty ? "." : folder)
            }
            return .file(path)
        }
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw FormatError(.io, file: path, "cannot list the folder: \(error.localizedDescription)")
        }
        let indexes = entries.filter(isShardIndexName).sorted()
        if indexes.count > 1 {
            throw FormatError(.refused, file: path, "folder holds \(indexes.count) shard indexes (\(indexes.joined(separator: ", "))); name the one to read")
        }
        if let only = indexes.first {
            if entries.contains(".metadata") {
                throw FormatError(.refused, file: path, "folder holds both a shard index (\(only)) and a DCP .metadata; name the one to read")
            }
            return .shardIndex(path + "/" + only)
        }
        if entries.contains(".metadata") { return .distributed(path) }
        // dcp.save(use_collectives=False): every rank wrote its own __<rank>.metadata, none the global one
        let perRank = entries.filter { $0.hasPrefix("__") && $0.hasSuffix(".metadata") && Int($0.dropFirst(2).dropLast(9)) != nil }.sorted()
        if let first = perRank.first {
            throw FormatError(.unsupported, file: path + "/" + first, "folder holds only per-rank DCP metadata (\(perRank.joined(separator: ", ")): dcp.save(use_collectives=False)), no global .metadata; torch reads it only rank by rank (dcp.load(use_collectives=False) on each rank), and dcp_to_torch_save cannot either: load it that way and save it again with dcp.save or torch.save")
        }
        if entries.contains(where: DistributedSafetensorsReader.isShardFileName) { return .distributedSafetensors(path) }
        // what save_pretrained writes when everything fits in one file
        let single = ["model.safetensors", "pytorch_model.bin"].filter(entries.contains)
        if single.count == 1 { return .file(path + "/" + single[0]) }
        throw FormatError(.io, file: path, "is a folder with no shard index (*.safetensors.index.json, *.bin.index.json) and no torch.distributed.checkpoint .metadata")
    }

    /// Reads `path` as one checkpoint, whatever of the above it is.
    /// - Throws: `FormatError` from the reader concerned.
    public static func read(path: String, options: UnpickleOptions = UnpickleOptions()) throws -> Checkpoint {
        switch try kind(of: path) {
        case let .file(f): return try CheckpointReader.read(path: f, options: options)
        case let .shardIndex(i): return try ShardedCheckpointReader.read(indexPath: i, options: options)
        case let .distributed(d): return try DistributedCheckpointReader.read(folder: d, options: options)
        case let .distributedSafetensors(d): return try DistributedSafetensorsReader.read(folder: d)
        }
    }

    /// Every file a read of `path` may map (the index and its shards, the DCP files), so a writer
    /// can refuse to replace any of them.
    public static func inputFiles(of path: String) -> [String] {
        guard let k = try? kind(of: path) else { return [path] }
        switch k {
        case let .file(f): return [f]
        case let .shardIndex(i):
            guard let index = try? ShardIndex.load(path: i) else { return [i] }
            return [i] + index.shards.map { index.folder + "/" + $0 }
        case let .distributed(d), let .distributedSafetensors(d):
            let files = (try? FileManager.default.contentsOfDirectory(atPath: d)) ?? []
            return files.map { d + "/" + $0 }
        }
    }
}
