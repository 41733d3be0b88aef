import CkptTensor
import Foundation

// Hugging Face sharded checkpoints: an index `model.safetensors.index.json` (or
// `pytorch_model.bin.index.json`) of the form {"metadata": {"total_size": N, ...},
// "weight_map": {"tensor name": "shard file", ...}} beside the shard files it names.
//
// transformers (`modeling_utils._load_pretrained_model`, `trainer_utils.load_sharded_checkpoint`)
// loads every shard in sorted(set(weight_map.values())) and merges what each file holds: a tensor
// present in a shard but missing from weight_map is loaded anyway, a tensor in two shards silently
// takes the later file's value, and a name in weight_map that its shard lacks only surfaces as a
// "missing key" the model initialises at random. ckpt refuses all three, naming the index, the
// shard and the key: an index that disagrees with its shards is a broken download or an edit,
// and a converted file should not depend on which copy happened to win.

/// One validated shard index: where it is, what it lists, and in which order.
public struct ShardIndex: Sendable {
    /// Largest index file read (huggingface_hub's `MAX_INDEX_FILE_SIZE` refuses oversized
    /// indexes for the same reason: an index is metadata, never a payload).
    public static let maxIndexBytes = 100_000_000

    /// The index file.
    public var path: String
    /// The folder shard paths are relative to.
    public var folder: String
    /// `metadata` members whose values are scalars, as strings (`total_size`), in file order.
    public var metadata: [(key: String, value: String)]
    /// Tensor name → shard file (as written in the index), in weight_map order.
    public var weightMap: [(name: String, shard: String)]
    /// Shard files in the order transformers loads them (sorted, each once).
    public var shards: [String]

    /// True for `*.safetensors.index.json`: every shard must then be a safetensors file.
    public var expectsSafetensors: Bool { path.lowercased().hasSuffix(".safetensors.index.json") }

    /// Parses and checks the index at `path` (JSON shape, unique names, shard paths that stay
    /// inside the folder); the shards are not opened.
    /// - Throws: `FormatError` naming the index and the offending key or shard.
    public static func load(path: String) throws -> ShardIndex {
        let region: ByteRegion
        do {
            region = try ByteRegion.map(path: path)
        } catch let TensorError.io(_, message) {
            throw FormatError(.io, file: path, "cannot read the shard index: \(message)")
        } catch {
            throw FormatError(.io, file: path, "cannot read the shard index: \(error)")
        }
        guard region.count <= maxIndexBytes else {
            throw FormatError(.limit, file: path, "shard index is \(region.count) bytes, over the limit of \(maxIndexBytes)")
        }
        let root = try JSONValue.parse(region.bytes, options: JSONParseOptions(maxDepth: 64, rejectDuplicateKeys: true),
                                       source: JSONSource(file: path))
        guard case let .object(members) = root else {
            throw FormatError(.corrupt, file: path, "shard index is a json \(root.typeName), expected an object with a weight_map")
        }
        guard let wm = root["weight_map"] else {
            throw FormatError(.corrupt, file: path, "shard index has no weight_map")
        }
        guard case let .object(entries) = wm else {
            throw FormatError(.corrupt, file: path, member: "weight_map", "weight_map is a json \(wm.typeName), expected an object of tensor name to shard file")
        }
        let folder = (path as NSString).deletingLastPathComponent
        var weightMap: [(String, String)] = []
        weightMap.reserveCapacity(entries.count)
        for (name, value) in entries {
            guard case let .string(shard) = value else {
                throw FormatError(.corrupt, file: path, member: "weight_map", "\(JSONValue.quoted(name, limit: 200)) maps to a json \(value.typeName), expected a shard file name")
            }
            try checkShardPath(shard, key: name, index: path)
            weightMap.append((name, shard))
        }
        var metadata: [(String, String)] = []
        for (k, v) in members where k == "metadata" {
            guard case let .object(items) = v else {
                if case .null = v { continue }
                throw FormatError(.corrupt, file: path, member: "metadata", "metadata is a json \(v.typeName), expected an object")
            }
            for (mk, mv) in items {
                switch mv {
                case let .string(s): metadata.append((mk, s))
                case let .number(n): metadata.append((mk, n.text))
                case let .bool(b): metadata.append((mk, b ? "true" : "false"))
                default: metadata.append((mk, mv.serialized(pretty: false)))
                }
            }
        }
        let shards = Array(Set(weightMap.map(\.1))).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return ShardIndex(path: path, folder: folder.isEmpty ? "." : folder, metadata: metadata, weightMap: weightMap, shards: shards)
    }

    /// Refuses shard names that leave the index's folder: absolute paths, `..` components, empty
    /// names, NUL bytes. (Symbolic links are checked when the shard is opened.)
    static func checkShardPath(_ shard: String, key: String, index: String, member: String = "weight_map", verb: String = "names shard") throws {
        func refuse(_ why: String) -> FormatError {
            FormatError(.refused, file: index, member: member, "\(JSONValue.quoted(key, limit: 200)) \(verb) \(JSONValue.quoted(shard, limit: 200)), \(why)")
        }
        if shard.isEmpty { throw refuse("an empty file name") }
        if shard.utf8.contains(0) { throw refuse("a name with a NUL byte") }
        if shard.hasPrefix("/") || shard.hasPrefix("\\") { throw refuse("an absolute path outside the folder") }
        let parts = shard.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "/" || $0 == "\\" })
        if parts.contains("..") { throw refuse("a path escaping the folder") }
        if parts.contains(where: { $0.isEmpty }) { throw refuse("a path with an empty component") }
    }

    /// The shard's path on disk, after checking that (symbolic links resolved) it stays inside
    /// the index's folder.
    /// - Throws: `FormatError(.refused)` for a shard outside the folder, `.io` for a missing one.
    func resolve(_ shard: String, forKey key: String) throws -> String {
        let full = folder + "/" + shard
        guard FileManager.default.fileExists(atPath: full) else {
            throw FormatError(.io, file: path, member: shard, "shard file is missing (listed for \(JSONValue.quoted(key, limit: 200)))")
        }
        let realFolder = URL(fileURLWithPath: folder).resolvingSymlinksInPath().path
        let realShard = URL(fileURLWithPath: full).resolvingSymlinksInPath().path
        guard realShard.hasPrefix(realFolder.hasSuffix("/") ? realFolder : realFolder + "/") else {
            throw FormatError(.refused, file: path, member: shard, "shard resolves to \(realShard), outside the index's folder \(realFolder)")
        }
        return full
    }
}

/// Reads a Hugging Face sharded checkpoint as one checkpoint. Counterpart: transformers'
/// `load_sharded_checkpoint` / `from_pretrained` on a folder with an index, with the stricter
/// consistency rules above.
public enum ShardedCheckpointReader {
    /// Reads the index at `indexPath` and every shard it names (each through the ordinary reader,
    /// so the same hostile-input rules apply; data stays mapped, not read).
    ///
    /// The root is an OrderedDict of tensor name → tensor in weight_map order. Shared storages
    /// inside one `.bin` shard stay shared. `info.metadata` holds the index's metadata
    /// (`total_size`), `info.format` is the shards' format.
    /// - Throws: `FormatError` naming the index, the shard and the key: a missing shard, a shard
    ///   path escaping the folder, a name in weight_map its shard lacks, a tensor in a shard but not
    ///   in weight_map or in two shards, a shard that is not a flat state dict, and any error of the
    ///   shard itself.
    public static func read(indexPath: String, options: UnpickleOptions = UnpickleOptions()) throws -> Checkpoint {
        let index = try ShardIndex.load(path: indexPath)
        guard !index.weightMap.isEmpty else {
            throw FormatError(.corrupt, file: indexPath, member: "weight_map", "weight_map is empty: the index names no tensors")
        }
        var firstKey: [String: String] = [:]
        for (name, shard) in index.weightMap where firstKey[shard] == nil { firstKey[shard] = name }

        var tensorsByName: [ExactKey: (tensor: Tensor, shard: String)] = [:]
        var shardOrder: [(name: String, shard: String)] = []
        var shardFormat: CheckpointFormat?
        var warnings: [String] = []
        for shard in index.shards {
            let path = try index.resolve(shard, forKey: firstKey[shard] ?? "")
            let c = try CheckpointReader.read(path: path, options: options)
            if index.expectsSafetensors, c.info.format != .safetensors {
                throw FormatError(.corrupt, file: indexPath, member: shard, "shard is a \(c.info.format.rawValue) file, a .safetensors index lists safetensors shards")
            }
            if let f = shardFormat, f != c.info.format {
                throw FormatError(.corrupt, file: indexPath, member: shard, "shard is a \(c.info.format.rawValue) file, the earlier shards are \(f.rawValue)")
            }
            shardFormat = c.info.format
            warnings += c.info.warnings.map { "\(shard): \($0)" }
            guard case let .dict(d) = c.root else {
                throw FormatError(.corrupt, file: indexPath, member: shard, "shard holds a \(c.root.typeName), expected a state dict of tensors")
            }
            for (k, v) in d.items {
                guard case let .string(name) = k, case let .tensor(t) = v else {
                    throw FormatError(.corrupt, file: indexPath, member: shard, "shard holds \(k.stringValue.map { "'\($0)'" } ?? "a \(k.typeName) key") → \(v.typeName), expected only tensor name → tensor")
                }
                if let earlier = tensorsByName[ExactKey(name)] {
                    throw FormatError(.corrupt, file: indexPath, member: shard, "tensor \(JSONValue.quoted(name, limit: 200)) is in two shards (\(earlier.shard) and \(shard)); transformers would silently keep the later copy")
                }
                tensorsByName[ExactKey(name)] = (t, shard)
                shardOrder.append((name, shard))
            }
        }
        let listed = Set(index.weightMap.map { ExactKey($0.name) })
        var items: [(key: Value, value: Value)] = []
        items.reserveCapacity(index.weightMap.count)
        for (name, shard) in index.weightMap {
            guard let found = tensorsByName[ExactKey(name)] else {
                throw FormatError(.corrupt, file: indexPath, member: shard, "tensor \(JSONValue.quoted(name, limit: 200)) is listed in weight_map but absent from its shard")
            }
            guard found.shard == shard else {
                throw FormatError(.corrupt, file: indexPath, member: found.shard, "tensor \(JSONValue.quoted(name, limit: 200)) is listed in weight_map for \(shard) but found in \(found.shard)")
            }
            items.append((.string(name), .tensor(found.tensor)))
        }
        if tensorsByName.count != listed.count {
            // a tensor a shard holds that the index does not name (report the first, by shard order)
            if let extra = shardOrder.first(where: { !listed.contains(ExactKey($0.name)) }) {
                throw FormatError(.corrupt, file: indexPath, member: extra.shard, "shard holds tensor \(JSONValue.quoted(extra.name, limit: 200)), which weight_map does not list; transformers would load it anyway")
            }
        }
        var info = FormatInfo(format: shardFormat ?? .safetensors)
        info.metadata = index.metadata
        info.warnings = warnings
        let indexName = (indexPath as NSString).lastPathComponent
        info.assembledFrom = "\(index.shards.count) \(info.format == .safetensors ? "safetensors" : info.format.rawValue) shard\(index.shards.count == 1 ? "" : "s") listed in \(indexName)"
        return Checkpoint(root: .dict(PyDict(items: items, kind: .orderedDict)), info: info)
    }
}
