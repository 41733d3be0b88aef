import CkptTensor
import Foundation

// Writing a checkpoint as Hugging Face shards: `model-00001-of-00003.safetensors` … plus
// `model.safetensors.index.json` (or `pytorch_model-0000i-of-0000N.bin` + `pytorch_model.bin.index.json`),
// split as `huggingface_hub.split_torch_state_dict_into_shards` splits: tensors in state-dict order,
// a new shard when the next tensor would tip the current one over the limit, a tensor larger than
// the limit alone in a shard of its own (appended at once, so it comes before the shard being
// filled), tensors sharing a storage kept with the first of them.
//
// Sizes as the splitter counts them: for `.bin` shards a tensor weighs its whole storage and the
// other tensors of that storage weigh nothing (torch.save writes a storage once, in that shard);
// for safetensors shards every tensor is written as its own contiguous copy (as ckpt's single-file
// safetensors output does), so each weighs its own bytes and none are grouped. transformers'
// save_pretrained instead drops tied duplicates (`lm_head.weight` when tied to the embedding) and
// re-ties them from the model's config on load; ckpt has no config to re-tie from, so it keeps
// every key and the output loads with `load_state_dict(strict=True)`.

/// A maximum shard size as transformers parses one (`utils.hub.convert_file_size_to_int`).
public enum ShardSize {
    /// `500MB` → 500·10^6, `2GB` → 2·10^9, `1GiB` → 2^30, `5KiB`, `7MiB`; a lowercase final `b` on
    /// a decimal unit means bits (`8Gb` → 10^9 bytes), as in transformers; a bare integer is bytes
    /// (transformers takes an int as is). Units are case-insensitive otherwise; the number must be
    /// a non-negative integer. Nil for anything else or on overflow.
    public static func parse(_ text: String) -> Int? {
        let s = text.trimmingCharacters(in: .whitespaces)
        if let n = Int(s), n >= 0 { return n }
        let upper = s.uppercased()
        let binary: [(String, Int)] = [("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10)]
        for (unit, m) in binary where upper.hasSuffix(unit) {
            guard let n = Int(s.dropLast(3)), n >= 0 else { return nil }
            return Checked.mul(n, m)
        }
        let decimal: [(String, Int)] = [("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000)]
        for (unit, m) in decimal where upper.hasSuffix(unit) {
            guard let n = Int(s.dropLast(2)), n >= 0, let bytes = Checked.mul(n, m) else { return nil }
            return s.hasSuffix("b") ? bytes / 8 : bytes
        }
        return nil
    }
}

/// How a state dict is split into shard files: `huggingface_hub.StateDictSplit`.
public struct ShardSplit: Sendable, Equatable {
    /// File name → tensor names, in shard order (names in state-dict order within each).
    public var files: [(name: String, tensors: [String])]
    /// Sum of the sizes counted (`metadata.total_size`).
    public var totalSize: Int

    /// True when there is more than one file (an index is written only then).
    public var isSharded: Bool { files.count > 1 }

    public static func == (a: ShardSplit, b: ShardSplit) -> Bool {
        a.totalSize == b.totalSize && a.files.map(\.name) == b.files.map(\.name) && a.files.map(\.tensors) == b.files.map(\.tensors)
    }

    /// Splits `items` (name, size in bytes, storage identity or nil) as
    /// `split_state_dict_into_shards_factory` does; `pattern` holds `{suffix}`
    /// (`model{suffix}.safetensors`), replaced by `-00001-of-00003`, or by nothing for one shard.
    public static func split(_ items: [(name: String, size: Int, storage: ObjectIdentifier?)], maxShardSize: Int,
                             pattern: String) -> ShardSplit {
        var shards: [[String]] = []
        var current: [String] = []
        var currentSize = 0
        var total = 0
        var groups: [(first: String, rest: [String])] = []
        var groupOf: [ObjectIdentifier: Int] = [:]
        for item in items {
            if let id = item.storage {
                if let g = groupOf[id] {
                    groups[g].rest.append(item.name)
                    continue
                }
                groupOf[id] = groups.count
                groups.append((item.name, []))
            }
            if item.size > maxShardSize {
                total += item.size
                shards.append([item.name])
                continue
            }
            if currentSize + item.size > maxShardSize {
                shards.append(current)
                current = []
                currentSize = 0
            }
            current.append(item.name)
            currentSize += item.size
            total += item.size
        }
        if !current.isEmpty { shards.append(current) }
        // tensors sharing a storage join the shard of the first of them (appended after its own tensors)
        var shardOf: [String: Int] = [:]
        for (i, s) in shards.enumerated() { for n in s { shardOf[n] = i } }
        for g in groups where !g.rest.isEmpty {
            if let i = shardOf[g.first] { shards[i] += g.rest }
        }
        let n = shards.count
        func name(_ i: Int) -> String {
            let suffix = n == 1 ? "" : "-" + pad(i + 1) + "-of-" + pad(n)
            return pattern.replacingOccurrences(of: "{suffix}", with: suffix)
        }
        return ShardSplit(files: shards.enumerated().map { (name($0.offset), $0.element) }, totalSize: total)
    }

    private static func pad(_ i: Int) -> String {
        let s = String(i)
        return String(repeating: "0", count: max(0, 5 - s.count)) + s
    }
}

/// Writes shards and their index. Counterpart: `huggingface_hub.save_torch_state_dict`
/// (`safe_serialization` True or False) and transformers' `save_pretrained(max_shard_size=...)`.
public enum ShardedCheckpointWriter {
    /// What was written.
    public struct Result: Sendable {
        /// The index file, or nil when everything fit in one file (no index, as transformers does).
        public var index: String?
        /// Every file written, in shard order.
        public var files: [String]
        /// The split.
        public var split: ShardSplit
        /// Files of an earlier save with the same pattern that were removed (as transformers and
        /// huggingface_hub clean the folder), after everything new was in place.
        public var removed: [String]
    }

    /// The file-name pattern and format an output names: a folder (→ `model{suffix}.safetensors`)
    /// or an index file (`model.safetensors.index.json`, `pytorch_model.bin.index.json`,
    /// `name.pth.index.json`, …).
    public static func layout(forOutput output: String) -> (folder: String, pattern: String, format: CheckpointWriter.OutputFormat) {
        let name = (output as NSString).lastPathComponent
        guard CheckpointSource.isShardIndexName(name) else {
            return (output, "model{suffix}.safetensors", .safetensors)
        }
        let folder = (output as NSString).deletingLastPathComponent
        let base = String(name.dropLast(".index.json".count)) // model.safetensors, pytorch_model.bin
        let ext = (base as NSString).pathExtension
        let stem = (base as NSString).deletingPathExtension
        let format: CheckpointWriter.OutputFormat = ext.lowercased() == "safetensors" ? .safetensors : .pth
        return (folder.isEmpty ? "." : folder, stem + "{suffix}." + ext, format)
    }

    /// Writes `tensors` (dotted names, state-dict order) as shards of at most `maxShardSize` bytes
    /// (a larger tensor gets a shard of its own) into `output` (see `layout(forOutput:)`), each
    /// file atomically, the index last. `metadata` goes into every safetensors shard's header
    /// (`format: pt`) and `total_size` into the index.
    /// - Throws: `FormatError`: `.refused` for duplicate names or an output that is an input,
    ///   and whatever the single-file writers throw; files already renamed into place stay.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], to output: String, maxShardSize: Int,
                             forbidding inputs: [String] = [], progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        let (folder, pattern, format) = layout(forOutput: output)
        var seen = Set<ExactKey>()
        for (n, _) in tensors where !seen.insert(ExactKey(n)).inserted {
            throw FormatError(.refused, file: output, member: n, "two tensors have the name '\(n)': a shard index maps each name to one shard")
        }
        let items = tensors.map { t -> (name: String, size: Int, storage: ObjectIdentifier?) in
            format == .pth ? (t.name, t.tensor.storage.byteCount, ObjectIdentifier(t.tensor.storage)) : (t.name, t.tensor.byteCount, nil)
        }
        let split = ShardSplit.split(items, maxShardSize: maxShardSize, pattern: pattern)
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw FormatError(.io, file: folder, "cannot create the output folder: \(error.localizedDescription)")
        }
        let byName = Dictionary(tensors.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        var written: [String] = []
        let total = split.files.reduce(0) { $0 + $1.tensors.count }
        var done = 0
        for file in split.files {
            let path = folder + "/" + file.name
            let shard = file.tensors.compactMap { n in byName[n].map { (name: n, tensor: $0) } }
            switch format {
            case .safetensors:
                try SafetensorsWriter.write(shard, metadata: [("format", "pt")], to: path, forbidding: inputs)
            case .pth:
                let root = Value.dict(PyDict(items: shard.map { (.string($0.name), .tensor($0.tensor)) }, kind: .orderedDict))
                try CheckpointWriter.writeTorchZip(Checkpoint(root: root, info: FormatInfo(format: .zip)), to: path, forbidding: inputs)
            }
            written.append(path)
            done += file.tensors.count
            progress?(done, total)
        }
        var indexPath: String?
        if split.isSharded {
            let indexName = pattern.replacingOccurrences(of: "{suffix}", with: "") + ".index.json"
            let path = folder + "/" + indexName
            // weight_map in state-dict order (readers take any order; ckpt reads in this one, so a
            // round trip keeps the order)
            var fileOf: [String: String] = [:]
            for file in split.files { for n in file.tensors { fileOf[n] = file.name } }
            let map: [(key: String, value: JSONValue)] = tensors.compactMap { t in fileOf[t.name].map { (t.name, JSONValue.string($0)) } }
            let json = JSONValue.object([
                ("metadata", .object([("total_size", .int(split.totalSize))])),
                ("weight_map", .object(map)),
            ])
            try AtomicFileWriter.write(json.serializedBytes(pretty: true) + [0x0A], to: path, forbidding: inputs)
            indexPath = path
            written.append(path)
        }
        // the folder cleaning transformers does before saving, done after: stale shards of the
        // same pattern (another shard count, the unsharded file, an old index)
        var removed: [String] = []
        let parts = pattern.components(separatedBy: "{suffix}")
        if parts.count == 2, let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) {
            let keep = Set(written.map { ($0 as NSString).lastPathComponent })
            // never an input, even one of the same pattern (`convert out out2/model... ` into its own folder)
            let inputPaths = Set(inputs.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path })
            for e in entries.sorted() where !keep.contains(e) && isStale(e, prefix: parts[0], suffix: parts[1]) {
                if inputPaths.contains(URL(fileURLWithPath: folder + "/" + e).resolvingSymlinksInPath().path) { continue }
                if (try? FileManager.default.removeItem(atPath: folder + "/" + e)) != nil { removed.append(e) }
            }
        }
        return Result(index: indexPath, files: written, split: split, removed: removed)
    }

    /// `prefix(-\d{5}-of-\d{5})?suffix(\.index\.json)?`, huggingface_hub's pattern of its own files.
    static func isStale(_ name: String, prefix: String, suffix: String) -> Bool {
        var rest = Substring(name)
        guard rest.hasPrefix(prefix) else { return false }
        rest = rest.dropFirst(prefix.count)
        if rest.hasSuffix(".index.json") { rest = rest.dropLast(".index.json".count) }
        guard rest.hasSuffix(suffix) else { return false }
        rest = rest.dropLast(suffix.count)
        if rest.isEmpty { return true }
        let u = Array(rest.utf8)
        guard u.count == 15, u[0] == UInt8(ascii: "-"), String(decoding: u[6 ..< 10], as: UTF8.self) == "-of-" else { return false }
        return (u[1 ..< 6] + u[10 ..< 15]).allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }
}
