import ArgumentParser
import CkptFormat
import CkptSurgery
import CkptTensor
import Foundation

/// `ckpt convert IN OUT`: between torch zip, legacy, tar and safetensors, optionally casting.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint to a zip .pth or .safetensors file (chosen by OUT's extension).",
        discussion: """
            Reads any format inspect reads. A .pth output is the zip form torch.save writes and loads with \
            torch.load(weights_only=True); nested structure, shared storages and _metadata are kept. A \
            .safetensors output flattens to dotted names and stores each tensor as its own contiguous copy. \
            --dtype casts floating tensors only (float64/32/16, bfloat16), rounding as torch's .half() / \
            .bfloat16() / .float() do. --state-dict (or --key PATH) writes only the model's state dict, found as \
            forward finds it (state_dict, model, model_state_dict, state_dict_ema, Lightning's state_dict without \
            its model. prefix) with module. / _orig_mod. removed, so load_state_dict(strict=True) takes the output; \
            what was dropped is listed. Storages saved on a GPU are written as CPU storages. OUT is written to a \
            temporary file and renamed into place.
            """)

    @Argument(help: "Input checkpoint.")
    var input: String

    @Argument(help: "Output file: .safetensors, or anything else for a zip .pth.")
    var output: String

    @Option(name: .long, help: "Cast floating tensors to float16, bfloat16 or float32.")
    var dtype: String?

    @Flag(name: .long, help: "Write only the model's state dict (wrapper prefixes removed), not the whole checkpoint.")
    var stateDict = false

    @Option(name: .long, help: "Write only the state dict at this dotted path (model, state_dict, ema).")
    var key: String?

    @Flag(name: .long, help: "Write a .safetensors output even when expanding views makes it far larger than the input.")
    var allowExpand = false

    @Option(name: .long, help: "Write OUT as Hugging Face shards of at most this size (500MB, 2GB = 10^9 bytes, 1GiB = 2^30) plus an index: OUT is a folder (safetensors shards) or an index path (model.safetensors.index.json, pytorch_model.bin.index.json).")
    var maxShardSize: String?

    @Flag(name: .long, help: "Print a JSON report.")
    var json = false

    @OptionGroup var read: ReadOptions

    func validate() throws {
        if let d = dtype, !["float16", "bfloat16", "float32", "half", "float", "bf16", "fp16", "fp32"].contains(d) {
            throw ValidationError("--dtype must be float16, bfloat16 or float32, got '\(d)'")
        }
        if let m = maxShardSize, (ShardSize.parse(m) ?? 0) <= 0 {
            throw ValidationError("--max-shard-size must be a positive size such as 500MB, 2GB (10^9 bytes) or 1GiB (2^30 bytes), got '\(m)'")
        }
    }

    private var targetDType: DType? {
        switch dtype {
        case "float16", "half", "fp16": return .float16
        case "bfloat16", "bf16": return .bfloat16
        case "float32", "float", "fp32": return .float32
        default: return nil
        }
    }

    /// What writing only the state dict at `rootPath` leaves out: the siblings of every container
    /// on the way down (`epoch`, `optimizer`), then inside the state dict every value that is not a
    /// dense tensor (a sparse or meta tensor, a stray number), by dotted path.
    static func dropped(from root: Value, keeping rootPath: String) -> [String] {
        var out: [String] = []
        var node = root, prefix = ""
        for part in rootPath.isEmpty ? [] : rootPath.split(separator: ".").map(String.init) {
            guard let d = node.dictValue, let next = d.items.first(where: { $0.key.pathComponent == part }) else { break }
            out += d.items.filter { $0.key.pathComponent != part }.map { prefix + $0.key.pathComponent }
            node = next.value
            prefix += part + "."
        }
        func holdsTensor(_ v: Value) -> Bool {
            var found = false
            Checkpoint.walk(v, path: "") { _, x in if case .tensor = x { found = true } }
            return found
        }
        func visit(_ v: Value, _ path: String) {
            let children: [(String, Value)]
            switch v {
            case .tensor: return
            case let .dict(d): children = d.items.map { ($0.key.pathComponent, $0.value) }
            case let .list(a), let .tuple(a): children = a.enumerated().map { (String($0.offset), $0.element) }
            default:
                out.append(path)
                return
            }
            for (k, c) in children {
                let p = path.isEmpty ? k : path + "." + k
                if case .tensor = c { continue }
                if holdsTensor(c) { visit(c, p) } else { out.append(p) }
            }
        }
        visit(node, String(prefix.dropLast()))
        return out
    }

    func run() throws {
        // chunk buffers come and go per storage: each a mapping of its own, returned when freed
        CLI.returnLargeAllocations()
        try CLI.run {
            var ckpt = try CLI.load(input, read)
            if ckpt.info.format == .torchscript {
                // a TorchScript module's weights, keyed as its state_dict() keys them
                ckpt.root = .dict(PyDict(items: ckpt.tensors.map { (.string($0.path), .tensor($0.tensor)) }, kind: .orderedDict))
            }
            // only the model's weights: what load_state_dict(strict=True) wants, the rest reported
            var kept: (root: String, prefix: String?, dropped: [String])?
            if stateDict || key != nil {
                let located: LocatedStateDict
                if let key {
                    guard let l = KeyAnalysis.locateStateDict(ckpt, at: key) else {
                        throw FormatError(.corrupt, file: input, member: key, "no tensors under '\(key)'")
                    }
                    located = l
                } else {
                    located = KeyAnalysis.locateStateDict(ckpt)
                }
                guard !located.raw.isEmpty else { throw FormatError(.corrupt, file: input, "no state dict with tensors found") }
                let dropped = Self.dropped(from: ckpt.root, keeping: located.rootPath)
                kept = (located.rootPath, located.wrapperPrefix, dropped)
                let metadata = located.rootPath.isEmpty ? ckpt.root.dictValue?.attributes ?? [] : []
                ckpt.root = .dict(PyDict(items: located.stateDict.map { (.string($0.key), .tensor($0.tensor)) }, kind: .orderedDict,
                                         attributes: located.wrapperPrefix == nil ? metadata : []))
            }
            // inert objects cannot be written to a weights_only file: turn them into plain data
            let (plain, notes) = Salvage.dataOnly(ckpt.root)
            ckpt.root = plain
            var cast = 0
            if let target = targetDType {
                var converted: [ObjectIdentifier: Storage] = [:]
                ckpt = try ckpt.mapTensors { _, t in
                    guard [.float64, .float32, .float16, .bfloat16].contains(t.dtype), t.dtype != target, t.storage.dtype == t.dtype else { return t }
                    let id = ObjectIdentifier(t.storage)
                    let s: Storage
                    if let c = converted[id] { s = c } else { s = try t.storage.cast(to: target); converted[id] = s }
                    cast += 1
                    return try Tensor(storage: s, dtype: target, shape: t.shape, strides: t.strides, storageOffset: t.storageOffset,
                                      isConjugated: t.isConjugated, isNegated: t.isNegated, requiresGrad: t.requiresGrad, isParameter: t.isParameter)
                }
            }
            if shardedOutput { return try writeSharded(ckpt, cast: cast) }
            let total = ckpt.tensors.count
            // safetensors stores every tensor whole: a small file of huge stride-0 views would expand
            if CheckpointWriter.format(forPath: output) == .safetensors, !allowExpand {
                let outBytes = ckpt.tensors.reduce(0) { $0 &+ $1.tensor.byteCount }
                let inBytes = inputByteCount
                if outBytes > 1 << 30, outBytes > 16 &* max(inBytes, 1) {
                    throw FormatError(.limit, file: input, "a .safetensors output would be \(CLI.bytes(outBytes)) from \(CLI.bytes(inBytes)) of input (views expanded); pass --allow-expand to write it")
                }
            }
            let progress = Progress("writing \(output)", total: 100)
            try CheckpointWriter.write(ckpt, to: output, forbidding: [input]) { done, all in
                progress.update(all == 0 ? 100 : done * 100 / max(all, 1))
            }
            progress.finish()
            let format = CheckpointWriter.format(forPath: output)
            if json {
                CLI.printJSON(.object([
                    ("input", .string(input)), ("output", .string(output)),
                    ("input_format", .string(ckpt.info.format.rawValue)), ("output_format", .string(format.rawValue)),
                    ("tensors", .int(total)), ("cast", .int(cast)),
                    ("dtype", targetDType.map { .string($0.rawValue) } ?? .null),
                    ("replaced_objects", .array(notes.map { .string($0) })),
                    ("state_dict_root", kept.map { .string($0.root) } ?? .null),
                    ("wrapper_prefix_removed", kept?.prefix.map { .string($0) } ?? .null),
                    ("dropped", .array((kept?.dropped ?? []).map { .string($0) })),
                ]))
            } else {
                var line = "wrote \(output) (\(format.rawValue)): \(CLI.plural(total, "tensor")) from \(ckpt.info.format.rawValue) \(input)"
                if let t = targetDType { line += ", \(cast) cast to \(t.rawValue)" }
                print(line)
                if let k = kept {
                    print("kept: the state dict at " + (k.root.isEmpty ? "the root" : "'\(k.root)'") + (k.prefix.map { " without '\($0)'" } ?? ""))
                    if !k.dropped.isEmpty { print("dropped: " + k.dropped.joined(separator: ", ")) }
                }
                for n in notes.prefix(20) { print("note: \(n)") }
                if notes.count > 20 { print("note: ... \(notes.count - 20) more objects replaced") }
            }
        }
    }
}
