/// The container a checkpoint came in.
public enum CheckpointFormat: String, Sendable, Codable {
    /// `torch.save` since 1.6: a zip archive with `data.pkl` and `data/<key>` records.
    case zip
    /// The magic-number stream of torch 0.1.10–1.5 (`_use_new_zipfile_serialization=False`).
    case legacy
    /// The tar form of torch < 0.1.10 (the first torchvision weights).
    case tar
    /// huggingface safetensors.
    case safetensors
    /// A TorchScript archive (`torch.jit.save`): tensors listed, never run.
    case torchscript
}

/// Facts about how a checkpoint file was written, for reports.
public struct FormatInfo: Sendable {
    /// Container format.
    public var format: CheckpointFormat
    /// Zip archive prefix folder (`archive`, `resnet18`), when zip.
    public var archivePrefix: String?
    /// Byte order of storage data.
    public var byteOrder: ByteOrder = .little
    /// Pickle protocol of the main pickle, when there is one.
    public var pickleProtocol: Int?
    /// The archive's `version` record.
    public var archiveVersion: Int?
    /// Every GLOBAL the pickles referenced, in first-seen order.
    public var globals: [QualifiedName] = []
    /// Globals outside torch's `weights_only` allowlist (kept as opaque nodes under salvage).
    public var disallowedGlobals: [QualifiedName] = []
    /// Opcodes the file used that `torch.load(weights_only=True)` rejects (`FRAME`), if any.
    public var opcodesRejectedByTorch: [String] = []
    /// safetensors `__metadata__`, when safetensors.
    public var metadata: [(key: String, value: String)] = []
    /// Warnings worth showing (CRC mismatch, unusual layout), one line each.
    public var warnings: [String] = []
    /// For a checkpoint assembled from several files (a sharded index, a DCP folder): what it was
    /// assembled from, one line (`3 safetensors shards listed in model.safetensors.index.json`).
    public var assembledFrom: String?
    /// Sparse tensors the pickles rebuilt (each checked as torch checks it after loading).
    public var sparseTensors = 0

    /// Info for a file of `format`.
    public init(format: CheckpointFormat) { self.format = format }

    /// True when `torch.load(path, weights_only=True)` would load this file, as far as ckpt can tell.
    public var isWeightsOnlyLoadable: Bool {
        switch format {
        case .tar, .torchscript: return false
        case .safetensors: return true
        case .zip, .legacy: return disallowedGlobals.isEmpty && opcodesRejectedByTorch.isEmpty
        }
    }
}

/// A whole checkpoint: the object tree the file holds, with tensors inside it, and how it was written.
public struct Checkpoint: Sendable {
    /// The top-level object (`OrderedDict` for a state dict, a dict for training checkpoints).
    public var root: Value
    /// How the file was written.
    public var info: FormatInfo

    /// A checkpoint over `root`.
    public init(root: Value, info: FormatInfo) {
        self.root = root
        self.info = info
    }

    /// Every tensor with its dotted path (`model.layer1.0.conv1.weight`), in file order.
    public var tensors: [(path: String, tensor: Tensor)] {
        var out: [(String, Tensor)] = []
        Checkpoint.walk(root, path: "") { p, v in
            if case let .tensor(t) = v { out.append((p, t)) }
        }
        return out
    }

    /// Every sparse tensor with its dotted path, in file order.
    public var sparseTensors: [(path: String, tensor: SparseTensor)] {
        var out: [(String, SparseTensor)] = []
        Checkpoint.walk(root, path: "") { p, v in
            if case let .sparse(t) = v { out.append((p, t)) }
        }
        return out
    }

    /// Every tensor saved from the meta device (shapes, no values) with its dotted path.
    public var metaTensors: [(path: String, tensor: MetaTensor)] {
        var out: [(String, MetaTensor)] = []
        Checkpoint.walk(root, path: "") { p, v in
            if case let .meta(t) = v { out.append((p, t)) }
        }
        return out
    }

    /// The first sparse or meta tensor, its path and a one-line summary, for work that needs
    /// dense tensors only (safetensors, shards).
    public var firstNonDenseTensor: (path: String, summary: String, kind: String)? {
        var found: (String, String, String)?
        Checkpoint.walk(root, path: "") { p, v in
            guard found == nil else { return }
            if case let .sparse(t) = v { found = (p, t.summary, "a sparse tensor") }
            if case let .meta(t) = v { found = (p, t.summary, "a meta tensor (no data)") }
        }
        return found
    }

    /// Visits every value of the tree depth-first with its dotted path.
    public static func walk(_ value: Value, path: String, _ visit: (String, Value) -> Void) {
        visit(path, value)
        func join(_ c: String) -> String { path.isEmpty ? c : path + "." + c }
        switch value {
        case let .dict(d):
            for (k, v) in d.items { walk(v, path: join(k.pathComponent), visit) }
        case let .list(a), let .tuple(a), let .set(a):
            for (i, v) in a.enumerated() { walk(v, path: join(String(i)), visit) }
        case let .object(o):
            for (i, v) in o.arguments.enumerated() { walk(v, path: join("<arg\(i)>"), visit) }
            if let s = o.state {
                // an instance __dict__ reads like attributes: model.conv1.weight
                if case let .dict(d) = s {
                    for (k, v) in d.items { walk(v, path: join(k.pathComponent), visit) }
                } else {
                    walk(s, path: path, visit)
                }
            }
        default:
            break
        }
    }

    /// Replaces every tensor by `transform(path, tensor)`, keeping the tree's structure.
    /// - Throws: whatever `transform` throws.
    public func mapTensors(_ transform: (String, Tensor) throws -> Tensor) rethrows -> Checkpoint {
        func map(_ v: Value, _ path: String) throws -> Value {
            func join(_ c: String) -> String { path.isEmpty ? c : path + "." + c }
            switch v {
            case let .tensor(t): return .tensor(try transform(path, t))
            case var .dict(d):
                d.items = try d.items.map { ($0.key, try map($0.value, join($0.key.pathComponent))) }
                return .dict(d)
            case let .list(a): return .list(try a.enumerated().map { try map($1, join(String($0))) })
            case let .tuple(a): return .tuple(try a.enumerated().map { try map($1, join(String($0))) })
            default: return v
            }
        }
        return Checkpoint(root: try map(root, ""), info: info)
    }
}
