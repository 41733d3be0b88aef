import CkptFormat
import CkptTensor
import Foundation

/// `ckpt convert IN OUT --max-shard-size 2GB`: the sharded output of `convert`.
extension Convert {
    /// True when OUT is to be written as shards: `--max-shard-size` given, or OUT names a shard index.
    var shardedOutput: Bool {
        maxShardSize != nil || CheckpointSource.isShardIndexName((output as NSString).lastPathComponent)
    }

    /// Bytes of every file the input is read from (all shards of an index, all files of a DCP folder).
    var inputByteCount: Int {
        CheckpointSource.inputFiles(of: input).reduce(0) { sum, f in
            sum &+ ((try? FileManager.default.attributesOfItem(atPath: f)[.size] as? Int) ?? 0)
        }
    }

    /// The limit in bytes (huggingface_hub's default of 5GB when OUT names an index without one).
    func shardLimit() throws -> Int {
        guard let text = maxShardSize else { return 5_000_000_000 }
        guard let n = ShardSize.parse(text), n > 0 else {
            throw FormatError(.refused, file: output, "--max-shard-size '\(text)' is not a size: use an integer with a unit, e.g. 500MB, 2GB (10^9 bytes) or 1GiB (2^30 bytes)")
        }
        return n
    }

    /// Writes `ckpt`'s tensors as shards plus an index and prints what was written. Non-tensor
    /// values cannot go into a shard index: they are listed, not written.
    func writeSharded(_ ckpt: Checkpoint, cast: Int) throws {
        let limit = try shardLimit()
        if let (p, summary, kind) = ckpt.firstNonDenseTensor {
            throw FormatError(.unsupported, file: output, "'\(p)' is \(kind) (\(summary)); shards hold only dense tensors with values")
        }
        let tensors = ckpt.tensors.map { (name: $0.path, tensor: $0.tensor) }
        var dropped: [String] = []
        Checkpoint.walk(ckpt.root, path: "") { p, v in
            switch v {
            case .dict, .list, .tuple, .set, .tensor: break
            default: dropped.append(p)
            }
        }
        let progress = Progress("writing \(output)", total: 100)
        let result = try ShardedCheckpointWriter.write(tensors, to: output, maxShardSize: limit,
                                                       forbidding: CheckpointSource.inputFiles(of: input)) { done, all in
            progress.update(done * 100 / max(all, 1))
        }
        progress.finish()
        let format = ShardedCheckpointWriter.layout(forOutput: output).format
        if json {
            let shards: [JSONValue] = result.split.files.map { f -> JSONValue in
                JSONValue.object([("file", JSONValue.string(f.name)), ("tensors", JSONValue.int(f.tensors.count))])
            }
            let index: JSONValue = result.index.map { JSONValue.string($0) } ?? .null
            var members: [(key: String, value: JSONValue)] = [("input", .string(input)), ("output", .string(output))]
            members.append(("input_format", .string(ckpt.info.format.rawValue)))
            members.append(("output_format", .string(format.rawValue)))
            members.append(("tensors", .int(tensors.count)))
            members.append(("cast", .int(cast)))
            members.append(("max_shard_size", .int(limit)))
            members.append(("total_size", .int(result.split.totalSize)))
            members.append(("index", index))
            members.append(("shards", .array(shards)))
            members.append(("removed_stale_files", .array(result.removed.map { JSONValue.string($0) })))
            members.append(("values_not_written", .array(dropped.map { JSONValue.string($0) })))
            CLI.printJSON(.object(members))
            return
        }
        let n = result.split.files.count
        var line = "wrote \(result.index ?? result.files.first ?? output) (\(format.rawValue)): \(CLI.plural(tensors.count, "tensor")) in \(CLI.plural(n, "shard")) of at most \(CLI.grouped(limit)) bytes from \(ckpt.info.format.rawValue) \(input)"
        if n == 1 { line += " (one file, so no index, as transformers writes it)" }
        print(line)
        for f in result.split.files { print("  \(f.name)  \(CLI.plural(f.tensors.count, "tensor"))") }
        if !result.removed.isEmpty { print("removed stale shard files: " + result.removed.joined(separator: ", ")) }
        if !dropped.isEmpty {
            print("note: \(CLI.plural(dropped.count, "non-tensor value")) not written (a shard index holds tensors only): " + dropped.prefix(10).joined(separator: ", ") + (dropped.count > 10 ? ", ..." : ""))
        }
    }
}
