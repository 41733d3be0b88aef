import CkptTensor

// The `.metadata` file of a torch.distributed.checkpoint (DCP) folder: a pickle (protocol 4) of
// `torch.distributed.checkpoint.metadata.Metadata`, written by `FileSystemWriter.finish` with
// `pickle.dump`. Its dataclasses arrive as NEWOBJ of the class with no arguments followed by BUILD
// with the instance dict (TensorProperties: BUILD with a tuple, its `__getstate__`). ckpt runs it
// through the same restricted unpickler with exactly these class names accepted as inert objects:
// none is imported or called, their states are read as plain data below, and any other global is
// refused as in a `.pth`.

/// Where one chunk or bytes entry lives: `_StorageInfo(relative_path, offset, length)`.
struct DistributedStorageInfo: Equatable {
    var relativePath: String
    var offset: Int
    var length: Int
    var transforms: [String]
}

/// One saved piece of a tensor: `ChunkStorageMetadata(offsets, sizes)` and where its bytes are.
struct DistributedChunk {
    var offsets: [Int]
    var sizes: [Int]
    var storage: DistributedStorageInfo
}

/// One entry of `state_dict_metadata`: a tensor in chunks, or a `torch.save`d object.
enum DistributedEntry {
    case tensor(dtype: DType, size: [Int], chunks: [DistributedChunk])
    case bytes(DistributedStorageInfo)
}

/// The decoded `Metadata`: entries in file order, each with its object path (`planner_data`).
struct DistributedMetadata {
    /// The class names the unpickler accepts, as inert objects, in a `.metadata` pickle.
    static let inertGlobals: Set<QualifiedName> = {
        var s: Set<QualifiedName> = []
        for n in ["Metadata", "TensorStorageMetadata", "TensorProperties", "ChunkStorageMetadata", "BytesStorageMetadata",
                  "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING"] {
            s.insert(QualifiedName("torch.distributed.checkpoint.metadata", n))
        }
        s.insert(QualifiedName("torch.distributed.checkpoint.filesystem", "_StorageInfo"))
        // StorageMeta.checkpoint_id: the path the folder was saved to (informational)
        for m in ["pathlib", "pathlib._local"] {
            for n in ["PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"] { s.insert(QualifiedName(m, n)) }
        }
        return s
    }()

    var entries: [(fqn: String, path: [PathKey], entry: DistributedEntry)]
    var version: String?

    /// A component of an object path: a dict key or a list index (`_traverse.OBJ_PATH`).
    enum PathKey: Equatable {
        case key(String)
        case index(Int)
    }

    /// Decodes `bytes` (the `.metadata` file) within the budgets of `budgets` (its salvage mode
    /// and allowed globals are ignored).
    /// - Throws: `FormatError` naming `file`: `.refused` for globals outside the allowlist and the
    ///   DCP classes, `.corrupt` for a structure that is not DCP metadata.
    static func decode(_ bytes: UnsafeRawBufferPointer, file: String, budgets: UnpickleOptions = UnpickleOptions()) throws -> DistributedMetadata {
        var options = budgets
        options.salvage = false
        options.inertGlobals = inertGlobals
        let u = Unpickler(bytes: bytes, file: file, member: ".metadata", options: options, persistentLoad: nil)
        let root: Value
        do {
            root = try u.run()
        } catch var e as FormatError where e.kind == .refused && e.message.contains("is not allowed") {
            // --salvage does not apply here: the metadata may name only the DCP classes
            if let cut = e.message.range(of: " is not allowed") {
                e.message = String(e.message[..<cut.lowerBound]) + " is not allowed in a DCP .metadata (only torch.distributed.checkpoint's metadata classes are read, as inert data)"
            }
            throw e
        }
        func fail(_ message: String) -> FormatError { FormatError(.corrupt, file: file, member: ".metadata", message) }

        let md = try fields(root, "Metadata", fail)
        guard let sdm = md["state_dict_metadata"]?.dictValue else { throw fail("Metadata has no state_dict_metadata dict") }
        // storage_data: MetadataIndex(fqn, offset) → _StorageInfo
        var storage: [String: DistributedStorageInfo] = [:]
        if let sd = md["storage_data"], case let .dict(d) = sd {
            for (k, v) in d.items {
                let idx = try fields(k, "MetadataIndex", fail)
                guard let fqn = idx["fqn"]?.stringValue else { throw fail("MetadataIndex without an fqn") }
                let offset = try idx["offset"].map { try ints($0, "MetadataIndex.offset of '\(fqn)'", fail, allowNone: true) } ?? nil
                let info = try storageInfo(v, fail)
                let id = lookupKey(fqn, offset)
                guard storage[id] == nil else { throw fail("storage_data lists '\(fqn)' at offset \(offset ?? []) twice") }
                storage[id] = info
            }
        } else if let sd = md["storage_data"], case .none = sd {
        } else {
            throw fail("Metadata has no storage_data dict")
        }
        // planner_data: fqn → object path tuple, when the state dict was flattened
        var paths: [String: [PathKey]] = [:]
        if let pd = md["planner_data"], case let .dict(d) = pd {
            for (k, v) in d.items {
                guard let fqn = k.stringValue, let items = v.sequenceValue else { continue }
                paths[fqn] = try items.map { item -> PathKey in
                    switch item {
                    case let .string(s): return .key(s)
                    case let .int(i) where i >= 0 && i < 1 << 20: return .index(i)
                    default: throw fail("planner_data path of '\(fqn)' holds a \(item.typeName), expected strings and list indices")
                    }
                }
            }
        }

        var entries: [(String, [PathKey], DistributedEntry)] = []
        for (k, v) in sdm.items {
            guard let fqn = k.stringValue else { throw fail("state_dict_metadata key is a \(k.typeName), expected a string") }
            guard case let .object(o) = v else { throw fail("state_dict_metadata['\(fqn)'] is a \(v.typeName)") }
            let path = paths[fqn] ?? [.key(fqn)]
            guard !path.isEmpty, case .key = path[0] else { throw fail("planner_data path of '\(fqn)' must start with a key") }
            switch o.global.name {
            case "BytesStorageMetadata":
                guard let info = storage[lookupKey(fqn, nil)] else {
                    throw fail("no storage_data entry for bytes entry '\(fqn)'")
                }
                entries.append((fqn, path, .bytes(info)))
            case "TensorStorageMetadata":
                let t = try fields(v, "TensorStorageMetadata", fail)
                guard let props = t["properties"], case let .object(p) = props, case let .tuple(state)? = p.state, let first = state.first else {
                    throw fail("tensor '\(fqn)' has no TensorProperties state")
                }
                let dtype: DType
                switch first {
                case let .dtype(d) where d.isQuantized:
                    // a DCP tensor entry has no room for a quantizer's scale and zero point
                    throw FormatError(.unsupported, file: file, member: ".metadata", "tensor '\(fqn)' has the quantized dtype torch.\(d.rawValue), which ckpt does not read from a distributed checkpoint")
                case let .dtype(d): dtype = d
                case let .global(g) where g.module == "torch": 
                    throw FormatError(.unsupported, file: file, member: ".metadata", "tensor '\(fqn)' has dtype torch.\(g.name), which ckpt does not read")
                default: throw fail("tensor '\(fqn)' has a dtype of type \(first.typeName)")
                }
                guard let sizeValue = t["size"] else { throw fail("tensor '\(fqn)' has no size") }
                let size = try ints(sizeValue, "size of '\(fqn)'", fail, allowNone: false) ?? []
                guard let chunkValues = t["chunks"]?.sequenceValue else { throw fail("tensor '\(fqn)' has no chunk list") }
                var chunks: [DistributedChunk] = []
                for c in chunkValues {
                    let cf = try fields(c, "ChunkStorageMetadata", fail)
                    let offsets = try cf["offsets"].flatMap { try ints($0, "chunk offsets of '\(fqn)'", fail, allowNone: false) } ?? []
                    let sizes = try cf["sizes"].flatMap { try ints($0, "chunk sizes of '\(fqn)'", fail, allowNone: false) } ?? []
                    guard let info = storage[lookupKey(fqn, offsets)] else {
                        throw fail("no storage_data entry for the chunk of '\(fqn)' at offsets \(offsets)")
                    }
                    chunks.append(DistributedChunk(offsets: offsets, sizes: sizes, storage: info))
                }
                entries.append((fqn, path, .tensor(dtype: dtype, size: size, chunks: chunks)))
            default:
                throw fail("state_dict_metadata['\(fqn)'] is a \(o.global), expected TensorStorageMetadata or BytesStorageMetadata")
            }
        }
        return DistributedMetadata(entries: entries, version: md["version"]?.stringValue)
    }

    private static func lookupKey(_ fqn: String, _ offset: [Int]?) -> String {
        fqn + "\u{0}" + (offset.map { $0.map(String.init).joined(separator: ",") } ?? "none")
    }

    /// The instance dict a dataclass was BUILT with (`{'fqn': ..}` or slots' `(None, {..})`).
    private static func fields(_ v: Value, _ cls: String, _ fail: (String) -> FormatError) throws -> [String: Value] {
        guard case let .object(o) = v, o.global.name == cls, o.arguments.isEmpty else {
            throw fail("expected a \(cls) object, got \(v.typeName)")
        }
        var d: PyDict?
        switch o.state {
        case let .dict(s)?: d = s
        case let .tuple(t)? where t.count == 2:
            if case let .dict(s) = t[1] { d = s } else if case let .dict(s) = t[0] { d = s }
        case nil: d = PyDict()
        default: break
        }
        guard let dict = d else { throw fail("\(cls) state is not a dict") }
        var out: [String: Value] = [:]
        for (k, value) in dict.items {
            guard let name = k.stringValue else { throw fail("\(cls) field name is a \(k.typeName)") }
            out[name] = value
        }
        return out
    }

    private static func ints(_ v: Value, _ what: String, _ fail: (String) -> FormatError, allowNone: Bool) throws -> [Int]? {
        if case .none = v, allowNone { return nil }
        guard let items = v.sequenceValue else { throw fail("\(what) is a \(v.typeName), expected a tuple of integers") }
        return try items.map { item in
            guard case let .int(i) = item, i >= 0 else { throw fail("\(what) holds \(item.typeName == "int" ? "a negative integer" : "a \(item.typeName)"), expected non-negative integers") }
            return i
        }
    }

    private static func storageInfo(_ v: Value, _ fail: (String) -> FormatError) throws -> DistributedStorageInfo {
        let f = try fields(v, "_StorageInfo", fail)
        guard let path = f["relative_path"]?.stringValue else { throw fail("_StorageInfo without a relative_path") }
        guard case let .int(offset)? = f["offset"], case let .int(length)? = f["length"], offset >= 0, length >= 0 else {
            throw fail("_StorageInfo of \(path) without a non-negative offset and length")
        }
        var transforms: [String] = []
        if let t = f["transform_descriptors"], let items = t.sequenceValue {
            transforms = items.compactMap(\.stringValue)
        }
        return DistributedStorageInfo(relativePath: path, offset: offset, length: length, transforms: transforms)
    }
}

extension DistributedCheckpointReader {
    /// The names (fqns) a DCP `.metadata` file lists, in file order, from its bytes alone: the
    /// decoder `read(folder:)` runs first, for fuzzing and checks that have no folder.
    /// - Throws: `FormatError` naming `file`, as `read(folder:)` does for its `.metadata`.
    public static func entryNames(metadata bytes: UnsafeRawBufferPointer, file: String,
                                  budgets: UnpickleOptions = UnpickleOptions()) throws -> [String] {
        try DistributedMetadata.decode(bytes, file: file, budgets: budgets).entries.map(\.fqn)
    }
}
