import CkptTensor

// Writing safetensors as the official writer (`safetensors/src/tensor.rs`, `prepare`) does:
// compact JSON header with `__metadata__` first, padded with spaces to a multiple of 8 so the
// buffer starts 8-aligned; tensors ordered by dtype descending in the reference's `Dtype` enum
// order (which is increasing alignment, so: 8-byte dtypes first, then 4, 2, 1) and then by name
// (byte order), so every tensor is naturally aligned. Each tensor is written as a contiguous
// copy of its elements: safetensors cannot express views or shared storage.

/// Writer for huggingface safetensors files. PyTorch counterpart: `safetensors.torch.save_file`.
public enum SafetensorsWriter {
    /// Writes `tensors` and `metadata` to `path` atomically (a temporary file renamed on success),
    /// streaming one tensor at a time so memory stays bounded by the largest tensor.
    ///
    /// Non-contiguous views, lazy conj/neg bits, big-endian storages and tensors sharing a
    /// storage are each materialised as their own contiguous copy.
    /// - Throws: `FormatError` naming `path` and the tensor: `.unsupported` for dtypes safetensors
    ///   has no code for (complex128, complex32), `.refused` for duplicate or reserved names and
    ///   duplicate metadata keys, `.limit` for a header over 100,000,000 bytes or a view too large
    ///   to materialise, `.io` for write failures and when `path` is one of `inputs`. Every check
    ///   that can fail before writing runs before the file is created.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [(String, String)],
                             to path: String, forbidding inputs: [String] = [],
                             progress: ((Int, Int) -> Void)? = nil) throws {
        let plan = try makePlan(tensors, metadata: metadata, file: path)
        let writer = try AtomicFileWriter(destination: path, forbidding: inputs)
        defer { writer.abort() }

        var lengthBytes = [UInt8](repeating: 0, count: 8)
        for i in 0 ..< 8 { lengthBytes[i] = UInt8(truncatingIfNeeded: UInt64(plan.header.count) >> (8 * UInt64(i))) }
        try writer.write(lengthBytes)
        try writer.write(plan.header)

        // Storages this call loads are evicted after their last use, so memory stays bounded by
        // one tensor even when a storage was deflated into the heap.
        var lastUse: [ObjectIdentifier: Int] = [:]
        var loadedBefore = Set<ObjectIdentifier>()
        for (i, item) in plan.ordered.enumerated() {
            let id = ObjectIdentifier(item.tensor.storage)
            lastUse[id] = i
            if item.tensor.storage.isLoaded { loadedBefore.insert(id) }
        }
        let dataStart = 8 + plan.header.count
        for (i, item) in plan.ordered.enumerated() {
            let expected = item.byteCount
            do {
                var written = 0
                try item.tensor.forEachContiguousChunk { bytes in
                    written += bytes.count
                    guard written <= expected else {
                        throw FormatError(.corrupt, file: path, member: Safetensors.memberName(item.name), offset: writer.position,
                                          "tensor gave more than the expected \(expected) bytes")
                    }
                    try writer.write(bytes)
                }
                guard written == expected else {
                    throw FormatError(.corrupt, file: path, member: Safetensors.memberName(item.name), offset: writer.position,
                                      "tensor gave \(written) bytes, expected \(expected)")
                }
            } catch let e as FormatError {
                throw e
            } catch {
                throw FormatError(.corrupt, file: path, member: Safetensors.memberName(item.name), offset: writer.position,
                                  "cannot read tensor data: \(error)")
            }
            let id = ObjectIdentifier(item.tensor.storage)
            if lastUse[id] == i && !loadedBefore.contains(id) { item.tensor.storage.evict() }
            progress?(writer.position - dataStart, plan.dataLength)
        }
        guard writer.position == dataStart + plan.dataLength else {
            throw FormatError(.io, file: path, "wrote \(writer.position) bytes, expected \(dataStart + plan.dataLength)")
        }
        try writer.commit()
    }

    /// The header bytes (compact JSON, space-padded to a multiple of 8) the writer would emit for
    /// `tensors` and `metadata`, without the length prefix; for tests and dry runs.
    /// - Throws: as `write(_:metadata:to:forbidding:)` for everything checked before writing.
    public static func header(for tensors: [(name: String, tensor: Tensor)], metadata: [(String, String)], file: String = "<memory>") throws -> [UInt8] {
        try makePlan(tensors, metadata: metadata, file: file).header
    }

    /// A tensor in file order with its byte count.
    private struct Item {
        var name: String
        var tensor: Tensor
        var code: String
        var rank: Int
        var byteCount: Int
    }

    private struct Plan {
        var ordered: [Item]
        var header: [UInt8]
        var dataLength: Int
    }

    private static func makePlan(_ tensors: [(name: String, tensor: Tensor)], metadata: [(String, String)], file: String) throws -> Plan {
        var names = Set<ExactKey>()
        var items: [Item] = []
        items.reserveCapacity(tensors.count)
        for (name, tensor) in tensors {
            func fail(_ kind: FormatError.Kind, _ message: String) -> FormatError {
                FormatError(kind, file: file, member: Safetensors.memberName(name), message)
            }
            guard names.insert(ExactKey(name)).inserted else {
                throw fail(.refused, "duplicate tensor name \(JSONValue.quoted(name, limit: 200)): safetensors names must be unique")
            }
            guard name != "__metadata__" else {
                throw fail(.refused, "tensor name __metadata__ is reserved for the safetensors metadata")
            }
            guard let code = tensor.dtype.safetensorsCode,
                  let rank = Safetensors.knownDTypeCodes.firstIndex(of: code) else {
                throw fail(.unsupported, tensor.dtype.isQuantized
                    ? "dtype \(tensor.dtype.rawValue) is quantized, which safetensors cannot hold (write a .pth)"
                    : "dtype \(tensor.dtype.rawValue) has no safetensors code")
            }
            guard let bytes = Checked.mul(tensor.elementCount, tensor.dtype.itemSize) else {
                throw fail(.limit, "byte count of shape \(tensor.shape) of \(tensor.dtype.rawValue) overflows 64 bits")
            }
            do {
                try tensor.checkMaterializable()
            } catch {
                throw fail(.limit, "\(error)")
            }
            items.append(Item(name: name, tensor: tensor, code: code, rank: rank, byteCount: bytes))
        }
        var metaKeys = Set<ExactKey>()
        for (k, _) in metadata where !metaKeys.insert(ExactKey(k)).inserted {
            throw FormatError(.refused, file: file, member: "header", "duplicate metadata key \(JSONValue.quoted(k, limit: 200))")
        }

        // the official order: dtype descending in enum order, then name ascending by bytes
        items.sort { a, b in
            if a.rank != b.rank { return a.rank > b.rank }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }

        // the compact JSON object written member by member into one buffer sized up front (a
        // tree of every member, then its serialisation growing by doubling, held 500 bytes a
        // tensor at once); the bytes are JSONValue.object(members).serializedBytes()'s
        var header: [UInt8] = []
        header.reserveCapacity(items.reduce(64) { $0 &+ $1.name.utf8.count &+ 64 &+ 8 * $1.tensor.shape.count })
        header.append(UInt8(ascii: "{"))
        func member(_ key: String, _ value: JSONValue) {
            if header.count > 1 { header.append(UInt8(ascii: ",")) }
            JSONValue.writeString(key, into: &header)
            header.append(UInt8(ascii: ":"))
            header.append(contentsOf: value.serializedBytes(pretty: false))
        }
        if !metadata.isEmpty {
            member("__metadata__", .object(metadata.map { ($0.0, JSONValue.string($0.1)) }))
        }
        var offset = 0
        for item in items {
            guard let end = Checked.add(offset, item.byteCount) else {
                throw FormatError(.limit, file: file, member: Safetensors.memberName(item.name), "total data size overflows 64 bits")
            }
            member(item.name, .object([
                ("dtype", .string(item.code)),
                ("shape", .array(item.tensor.shape.map { JSONValue.int($0) })),
                ("data_offsets", .array([.int(offset), .int(end)])),
            ]))
            offset = end
        }
        header.append(UInt8(ascii: "}"))
        header.append(contentsOf: repeatElement(0x20, count: (8 - header.count % 8) % 8))
        guard header.count <= Safetensors.maxHeaderLength else {
            throw FormatError(.limit, file: file, member: "header",
                              "header would be \(header.count) bytes, over the limit of \(Safetensors.maxHeaderLength) readers accept")
        }
        return Plan(ordered: items, header: header, dataLength: offset)
    }
}
