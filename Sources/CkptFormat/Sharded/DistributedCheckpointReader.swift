import CkptTensor
import Foundation

// Reading a torch.distributed.checkpoint folder as one checkpoint, as
// `torch.distributed.checkpoint.format_utils.dcp_to_torch_save` rebuilds it: every entry of
// `state_dict_metadata` in file order, placed at its `planner_data` object path (dicts for string
// keys, lists for integer indices, `_traverse.set_element`), so `{'model': {...}, 'optim': {...}}`
// comes back nested as it was saved.
//
// Storage layout (torch 2.15, `filesystem._write_item`): each tensor chunk is a complete
// `torch.save` zip stream at (offset, length) inside `relative_path` (`__<rank>_<n>.distcp`);
// bytes entries (non-tensor values: ints, floats, tuples, strings) are `torch.save`d objects the
// same way. A tensor's chunks tile its full size (`ChunkStorageMetadata(offsets, sizes)`); ckpt
// checks that they do exactly (no gap, no overlap), because torch would leave a gap's elements as
// whatever `torch.empty` held. Chunk pickles are read when the folder is opened (dtype and shape
// checked); chunk data is copied into the full tensor only when that tensor's data is used.

/// Reader for torch.distributed.checkpoint folders (`.metadata` + `*.distcp`).
/// Counterpart: `dcp_to_torch_save(folder, path)` followed by `torch.load(path)`.
public enum DistributedCheckpointReader {
    /// Most chunks one tensor may have (each is checked against every other for overlap).
    public static let maxChunksPerTensor = 4096

    /// Reads the DCP folder `folder`.
    ///
    /// Tensors keep their saved dtype and full size, contiguous; non-tensor entries are read with
    /// the same restricted unpickler as a `.pth` (`options.salvage` applies), where torch would
    /// run `torch.load(weights_only=False)`.
    /// - Throws: `FormatError` naming the folder's file and offset: `.io` for a missing file,
    ///   `.truncated` for a chunk past the end of its file, `.refused` for a global outside the
    ///   allowlist (in `.metadata` or an entry) or a relative path leaving the folder,
    ///   `.unsupported` for stream transforms (compression extensions), `.corrupt` for chunks that
    ///   do not tile their tensor or hold the wrong dtype or shape.
    public static func read(folder: String, options: UnpickleOptions = UnpickleOptions()) throws -> Checkpoint {
        let metaPath = folder + "/.metadata"
        let metaRegion: ByteRegion
        do {
            metaRegion = try ByteRegion.map(path: metaPath)
        } catch let TensorError.io(_, message) {
            throw FormatError(.io, file: metaPath, "cannot read: \(message)")
        } catch {
            throw FormatError(.io, file: metaPath, "cannot read: \(error)")
        }
        let metadata = try DistributedMetadata.decode(metaRegion.bytes, file: metaPath)

        var files: [String: ByteRegion] = [:]
        func region(_ relative: String, for fqn: String) throws -> ByteRegion {
            if let r = files[relative] { return r }
            try ShardIndex.checkShardPath(relative, key: fqn, index: metaPath, member: "storage_data", verb: "is stored in")
            let p = folder + "/" + relative
            let realFolder = URL(fileURLWithPath: folder).resolvingSymlinksInPath().path
            let realFile = URL(fileURLWithPath: p).resolvingSymlinksInPath().path
            guard realFile.hasPrefix(realFolder.hasSuffix("/") ? realFolder : realFolder + "/") else {
                throw FormatError(.refused, file: metaPath, member: relative, "'\(fqn)' is stored in \(realFile), outside the checkpoint folder \(realFolder)")
            }
            let r: ByteRegion
            do {
                r = try ByteRegion.map(path: p)
            } catch let TensorError.io(_, message) {
                throw FormatError(.io, file: p, "cannot read the file '\(fqn)' is stored in: \(message)")
            } catch {
                throw FormatError(.io, file: p, "cannot read the file '\(fqn)' is stored in: \(error)")
            }
            files[relative] = r
            return r
        }
        func slice(_ info: DistributedStorageInfo, for fqn: String) throws -> (ByteRegion, ByteRegion) {
            let parent = try region(info.relativePath, for: fqn)
            let p = folder + "/" + info.relativePath
            // FileSystemWriter(serialization_format=SAFETENSORS) writes each rank's items as one
            // safetensors file, while its .metadata still points at torch.save streams: torch's
            // FileSystemReader fails on it and HuggingFaceStorageReader reads only *.safetensors
            if parent.count >= 9, let b = parent.base, Safetensors.looksLikeSafetensors(UnsafeRawBufferPointer(start: b, count: parent.count)) {
                throw FormatError(.unsupported, file: p, "'\(fqn)' is in a safetensors file, as FileSystemWriter(serialization_format=SAFETENSORS) writes it, which torch's FileSystemReader (and dcp_to_torch_save) cannot read either: save with HuggingFaceStorageWriter, which ckpt reads, or with the default serialization_format")
            }
            guard info.transforms.isEmpty else {
                throw FormatError(.unsupported, file: p, offset: info.offset, "'\(fqn)' is stored through transforms \(info.transforms) (a DCP extension such as compression), which ckpt does not read: load it in torch and save it again without _extensions (dcp.save with a plain FileSystemWriter, or format_utils.dcp_to_torch_save)")
            }
            guard let end = Checked.add(info.offset, info.length), end <= parent.count else {
                throw FormatError(.truncated, file: p, offset: info.offset, "'\(fqn)' is stored at [\(info.offset), \(info.offset &+ info.length)), past the end of the \(parent.count)-byte file")
            }
            guard info.length > 0, let base = parent.base else {
                throw FormatError(.corrupt, file: p, offset: info.offset, "'\(fqn)' is stored as 0 bytes")
            }
            return (parent, ByteRegion(base: base + info.offset, count: info.length, ownership: .borrowed))
        }
        func name(_ info: DistributedStorageInfo) -> String { folder + "/" + info.relativePath + "+0x" + String(info.offset, radix: 16) }

        let tree = TreeBuilder()
        var tensorCount = 0, chunkCount = 0
        for (fqn, path, entry) in metadata.entries {
            let value: Value
            switch entry {
            case let .bytes(info):
                let (parent, sub) = try slice(info, for: fqn)
                // a torch.save'd object: copied out (it is small) so nothing refers into the mapping
                let copy = withExtendedLifetime(parent) { ByteRegion(copying: sub.bytes) }
                let c = try CheckpointReader.read(region: copy, file: name(info), options: options)
                value = c.root
            case let .tensor(dtype, size, chunks):
                value = .tensor(try assemble(fqn: fqn, dtype: dtype, size: size, chunks: chunks, metaPath: metaPath) { info in
                    let (parent, sub) = try slice(info, for: fqn)
                    let c = try CheckpointReader.read(region: sub, file: name(info), options: UnpickleOptions())
                    guard case let .tensor(t) = c.root else {
                        throw FormatError(.corrupt, file: name(info), "chunk of '\(fqn)' holds a \(c.root.typeName), expected a tensor")
                    }
                    return (parent, sub, t)
                })
                tensorCount += 1
                chunkCount += chunks.count
            }
            try tree.set(path, value, fqn: fqn, file: metaPath)
        }
        var info = FormatInfo(format: .zip)
        if let v = metadata.version { info.metadata = [("dcp_version", v)] }
        let fileCount = Set(metadata.entries.flatMap { e -> [String] in
            switch e.entry {
            case let .bytes(i): return [i.relativePath]
            case let .tensor(_, _, chunks): return chunks.map(\.storage.relativePath)
            }
        }).count
        info.assembledFrom = "torch.distributed.checkpoint folder: \(metadata.entries.count) entries, \(tensorCount) tensors in \(chunkCount) chunks over \(fileCount) .distcp file\(fileCount == 1 ? "" : "s")"
        _ = files
        return Checkpoint(root: tree.value(), info: info)
    }

    /// The full tensor of `size` tiled by `chunks`; `open` gives each chunk's file mapping (kept
    /// alive by the returned storage), the chunk's sub-region of it, and its tensor.
    static func assemble(fqn: String, dtype: DType, size: [Int], chunks: [DistributedChunk], metaPath: String,
                         open: (DistributedStorageInfo) throws -> (ByteRegion, ByteRegion, Tensor)) throws -> Tensor {
        func fail(_ message: String) -> FormatError { FormatError(.corrupt, file: metaPath, member: fqn, message) }
        guard let numel = Checked.product(size), let byteCount = Checked.mul(numel, dtype.itemSize) else {
            throw FormatError(.limit, file: metaPath, member: fqn, "size \(size) overflows 64 bits")
        }
        guard chunks.count <= maxChunksPerTensor else {
            throw FormatError(.limit, file: metaPath, member: fqn, "\(chunks.count) chunks, over the limit of \(maxChunksPerTensor)")
        }
        var covered = 0
        for (i, c) in chunks.enumerated() {
            guard c.offsets.count == size.count, c.sizes.count == size.count else {
                throw fail("chunk \(i) has offsets \(c.offsets) and sizes \(c.sizes) for a tensor of rank \(size.count)")
            }
            for d in 0 ..< size.count {
                guard let end = Checked.add(c.offsets[d], c.sizes[d]), end <= size[d] else {
                    throw fail("chunk \(i) at offsets \(c.offsets) with sizes \(c.sizes) reaches past size \(size)")
                }
            }
            guard let n = Checked.product(c.sizes), let sum = Checked.add(covered, n) else { throw fail("chunk sizes overflow") }
            covered = sum
            for j in 0 ..< i where overlaps(c, chunks[j]) {
                throw fail("chunks \(j) and \(i) overlap (offsets \(chunks[j].offsets) and \(c.offsets))")
            }
        }
        guard covered == numel else {
            throw fail("chunks cover \(covered) of \(numel) elements of size \(size): torch would leave the rest uninitialised")
        }
        var pieces: [(region: ByteRegion, sub: ByteRegion, tensor: Tensor, chunk: DistributedChunk)] = []
        for c in chunks {
            let (parent, sub, t) = try open(c.storage)
            guard t.dtype == dtype else { throw fail("chunk at offsets \(c.offsets) is \(t.dtype.rawValue), the metadata says \(dtype.rawValue)") }
            guard t.shape == c.sizes else { throw fail("chunk at offsets \(c.offsets) has shape \(t.shape), the metadata says \(c.sizes)") }
            // a stride-0 view would let a few stored bytes claim a huge tensor
            do {
                try t.checkMaterializable()
            } catch {
                throw fail("chunk at offsets \(c.offsets): \(error)")
            }
            pieces.append((parent, sub, t, c))
        }
        let strides = Tensor.contiguousStrides(size)
        let item = dtype.itemSize
        let parts = pieces
        let storage = Storage(key: fqn, dtype: dtype, byteCount: byteCount) {
            // one stored, contiguous chunk (what one process saves): its bytes inside the mapped
            // .distcp file, not copied
            if parts.count == 1, let p = parts.first, p.tensor.isPlainContiguous, p.tensor.storage.byteOrder == .little,
               let s = try? p.tensor.storage.slice(), s.region === p.sub, let pb = p.region.base, let sb = p.sub.base {
                return ByteSlice(region: p.region, offset: (sb - pb) + s.offset + p.tensor.storageOffset * item, count: byteCount)
            }
            let region = try ByteRegion.allocate(count: byteCount) { dst in
                for p in parts {
                    try withExtendedLifetime(p.region) {
                        try p.tensor.withContiguousBytes { src in
                            scatter(src, into: dst, offsets: p.chunk.offsets, sizes: p.chunk.sizes, strides: strides, itemSize: item)
                        }
                    }
                }
            }
            return ByteSlice(region: region)
        }
        do {
            return try Tensor(storage: storage, dtype: dtype, shape: size, strides: strides, storageOffset: 0)
        } catch {
            throw fail("invalid tensor: \(error)")
        }
    }

    private static func overlaps(_ a: DistributedChunk, _ b: DistributedChunk) -> Bool {
        if a.sizes.contains(0) || b.sizes.contains(0) { return false }
        for d in 0 ..< a.offsets.count {
            if a.offsets[d] + a.sizes[d] <= b.offsets[d] || b.offsets[d] + b.sizes[d] <= a.offsets[d] { return false }
        }
        return true
    }

    /// Copies a contiguous chunk (row-major, `sizes`) into the full tensor's bytes at `offsets`,
    /// one innermost run at a time.
    static func scatter(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer,
                        offsets: [Int], sizes: [Int], strides: [Int], itemSize: Int) {
        guard let s = src.baseAddress, let d = dst.baseAddress, !sizes.contains(0) else { return }
        let rank = sizes.count
        if rank == 0 {
            d.copyMemory(from: s, byteCount: itemSize)
            return
        }
        let run = sizes[rank - 1] * itemSize
        var index = [Int](repeating: 0, count: max(rank - 1, 0))
        var from = 0
        while true {
            var element = offsets[rank - 1]
            for k in 0 ..< rank - 1 { element += (offsets[k] + index[k]) * strides[k] }
            (d + element * itemSize).copyMemory(from: s + from, byteCount: run)
            from += run
            var k = rank - 2
            while k >= 0 {
                index[k] += 1
                if index[k] < sizes[k] { break }
                index[k] = 0
                k -= 1
            }
            if k < 0 { return }
        }
    }
}

/// Builds the nested state dict from object paths as `_traverse.set_element` does.
private final class TreeBuilder {
    final class Node {
        var isList: Bool
        var keys: [Value] = []
        var slots: [Slot] = []
        var position: [String: Int] = [:]
        init(isList: Bool) { self.isList = isList }
    }

    enum Slot {
        case leaf(Value)
        case node(Node)
    }

    let root = Node(isList: false)

    func set(_ path: [DistributedMetadata.PathKey], _ value: Value, fqn: String, file: String) throws {
        func fail(_ m: String) -> FormatError { FormatError(.corrupt, file: file, member: fqn, m) }
        var current = root
        for i in 0 ..< path.count {
            let isLast = i == path.count - 1
            let slotIndex: Int
            switch (path[i], current.isList) {
            case let (.key(k), false):
                if let at = current.position[k] {
                    slotIndex = at
                } else {
                    current.position[k] = current.slots.count
                    current.keys.append(.string(k))
                    current.slots.append(.leaf(.none))
                    slotIndex = current.slots.count - 1
                }
            case let (.index(n), true):
                while current.slots.count <= n {
                    current.keys.append(.int(current.slots.count))
                    current.slots.append(.leaf(.none))
                }
                slotIndex = n
            case (.key, true): throw fail("object path puts a dict key into a list")
            case (.index, false): throw fail("object path puts a list index into a dict")
            }
            if isLast {
                if case .node = current.slots[slotIndex] { throw fail("entry would replace a container") }
                current.slots[slotIndex] = .leaf(value)
                return
            }
            let wantList: Bool
            if case .index = path[i + 1] { wantList = true } else { wantList = false }
            switch current.slots[slotIndex] {
            case let .node(n):
                guard n.isList == wantList else { throw fail("object path mixes a list and a dict at one place") }
                current = n
            case .leaf(.none):
                let n = Node(isList: wantList)
                current.slots[slotIndex] = .node(n)
                current = n
            case .leaf:
                throw fail("object path runs through a value that is not a container")
            }
        }
    }

    func value() -> Value { convert(root) }

    private func convert(_ n: Node) -> Value {
        let children = n.slots.map { slot -> Value in
            switch slot {
            case let .leaf(v): return v
            case let .node(c): return convert(c)
            }
        }
        if n.isList { return .list(children) }
        return .dict(PyDict(items: Array(zip(n.keys, children)).map { (key: $0.0, value: $0.1) }, kind: .dict))
    }
}
