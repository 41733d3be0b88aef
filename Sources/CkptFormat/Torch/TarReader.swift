import CkptTensor

/// Reads the tar form of torch < 0.1.10 (the first torchvision weights, e.g. `resnet34-333f7ec4.pth`):
/// members `sys_info`, `pickle`, `tensors`, `storages`. Tensors and storages are described in
/// their own members; the main pickle refers to them by string persistent ids.
/// Counterpart: `legacy_load` inside `torch.serialization._legacy_load`.
enum TarReader {
    /// True when the file has a ustar header (`ustar` at offset 257).
    static func looksTar(_ b: UnsafeRawBufferPointer) -> Bool {
        b.count >= 512 && b[257] == 0x75 && b[258] == 0x73 && b[259] == 0x74 && b[260] == 0x61 && b[261] == 0x72
    }

    /// Longest GNU long name ckpt reads (Linux paths end at 4096 bytes).
    static let maxLongName = 1 << 16

    /// Member name → byte range, walking 512-byte headers read with `pread` (nothing between
    /// them is read); pax records are refused, GNU long names applied.
    static func members(_ stream: StreamBytes) throws -> [ExactKey: (offset: Int, count: Int)] {
        let file = stream.file
        let total = stream.region.count
        var out: [ExactKey: (Int, Int)] = [:]
        var o = 0
        var longName: String?
        while o + 512 <= total {
            let header = try stream.read(512, at: o, member: "tar header")
            if header.allSatisfy({ $0 == 0 }) { break }
            let nameField = header[0 ..< 100].prefix { $0 != 0 }
            var name = String(decoding: nameField, as: UTF8.self)
            let sizeText = String(decoding: header[124 ..< 136].prefix { $0 != 0 && $0 != 0x20 }, as: UTF8.self)
            guard let size = Int(sizeText.isEmpty ? "0" : sizeText, radix: 8), size >= 0 else {
                throw FormatError(.corrupt, file: file, member: name, offset: o + 124, "tar member size is not octal")
            }
            let type = header[156]
            let data = o + 512
            guard size <= total - data else {
                throw FormatError(.truncated, file: file, member: name, offset: o, "tar member of \(size) bytes runs past the end of the file")
            }
            let padded = (size + 511) / 512 * 512
            switch type {
            case UInt8(ascii: "L"):
                guard size <= TarReader.maxLongName else {
                    throw FormatError(.limit, file: file, member: name, offset: o, "GNU long name of \(size) bytes (limit \(TarReader.maxLongName))")
                }
                longName = String(decoding: try stream.read(size, at: data, member: name).prefix { $0 != 0 }, as: UTF8.self)
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                // pax records can rename or resize the next member as Python's tarfile reads it:
                // refused rather than read differently (torch's tar files predate pax)
                throw FormatError(.refused, file: file, member: name, offset: o, "pax extended header in a torch tar file: it may rename or resize members as Python's tarfile reads them, so ckpt refuses it")
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                // '7' (contiguous file) is a regular file to Python's tarfile
                if let l = longName { name = l; longName = nil }
                guard out[ExactKey(name)] == nil else { throw FormatError(.refused, file: file, member: name, offset: o, "duplicate tar member") }
                out[ExactKey(name)] = (data, size)
            case UInt8(ascii: "1"), UInt8(ascii: "2"), UInt8(ascii: "K"):
                // tarfile.extractfile follows links to another member's data: ambiguous, refused
                throw FormatError(.refused, file: file, member: longName ?? name, offset: o, "link member in a torch tar file (tarfile would read another member's data through it)")
            case UInt8(ascii: "5"):
                longName = nil
            default:
                throw FormatError(.refused, file: file, member: longName ?? name, offset: o, "tar member of type '\(String(UnicodeScalar(type)))' in a torch tar file")
            }
            o = data + min(padded, total - data)
        }
        return out
    }

    /// Reads the tar file in `region`; headers are read with `pread` and the `storages` member's
    /// pickles run in windows, so the region need not be mapped whole and no tensor page is touched.
    static func read(_ region: ByteRegion, file: String, options: UnpickleOptions) throws -> Checkpoint {
        let stream = StreamBytes(region: region, file: file)
        let m = try members(stream)
        func member(_ n: String) throws -> (offset: Int, count: Int) {
            guard let r = m[ExactKey(n)] else { throw FormatError(.corrupt, file: file, member: n, "tar checkpoint has no '\(n)' member") }
            return r
        }
        /// a member holding only metadata, mapped alone while `body` reads it
        func withMember<R>(_ n: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
            let r = try member(n)
            return try mapped(stream.part(offset: r.offset, count: r.count), file: file, member: n, body)
        }
        var info = FormatInfo(format: .tar)
        let sysInfo = try withMember("sys_info") { try runEmbeddedPickle($0, at: 0, file: file, member: "sys_info", options: options) }
        info.record(sysInfo.unpickler)

        // storages: count, then per storage (key, location, class) + i64 numel + bytes; then the view list
        let index = RecordIndex()
        let table = StorageTable(file: file, member: "storages", byteOrder: .little) { key, _, count in
            return .loader {
                guard let r = index.ranges[ExactKey(key)], r.count == count else {
                    throw FormatError(.corrupt, file: file, member: "storages", "storage \(key) has no record of \(count) bytes")
                }
                return stream.part(offset: r.offset, count: r.count)
            }
        }
        let sr = try member("storages")
        func storagesPickle(at o: Int) throws -> (value: Value, end: Int, unpickler: Unpickler) {
            try stream.pickle(member: "storages", start: sr.offset, length: sr.count, at: o, options: options)
        }
        var objects: [ExactKey: Value] = [:]
        var p = try storagesPickle(at: 0)
        guard case let .int(storageCount) = p.value, storageCount >= 0, storageCount <= sr.count / 8 else {
            throw FormatError(.corrupt, file: file, member: "storages", offset: 0, "storage count is not a small int")
        }
        var o = p.end
        for _ in 0 ..< storageCount {
            p = try storagesPickle(at: o)
            guard case let .tuple(t) = p.value, t.count == 3, let key = table.keyString(t[0]) else {
                throw FormatError(.corrupt, file: file, member: "storages", offset: o, "storage header is not (key, location, class)")
            }
            let d = try table.dtype(ofStorageClass: t[2])
            o = p.end
            guard o <= sr.count - 8 else { throw FormatError(.truncated, file: file, member: "storages", offset: o, "ends before a storage size") }
            let numel = Int(try stream.integer(Int64.self, at: sr.offset + o, member: "storages"))
            guard numel >= 0, let n = Checked.mul(numel, d.itemSize), n <= sr.count - o - 8 else {
                throw FormatError(.truncated, file: file, member: "storages", offset: o, "storage \(key) of \(numel) elements runs past the member")
            }
            index.ranges[ExactKey(key)] = (sr.offset + o + 8, n)
            objects[ExactKey(key)] = .storage(try table.storage(key: key, dtype: d, numel: numel, location: t[1].stringValue ?? "cpu"))
            o += 8 + n
        }
        p = try storagesPickle(at: o)
        for v in p.value.sequenceValue ?? [] {
            guard let t = v.sequenceValue, t.count == 4, let vk = table.keyString(t[0]), let rk = table.keyString(t[1]),
                  case let .int(off) = t[2], case let .int(vn) = t[3], case let .storage(root)? = objects[ExactKey(rk)],
                  off >= 0, vn >= 0, let end = Checked.add(off, vn), let eb = Checked.mul(end, root.dtype.itemSize), eb <= root.byteCount else {
                throw FormatError(.corrupt, file: file, member: "storages", "storage view entry is malformed or out of range")
            }
            let size = root.dtype.itemSize
            objects[ExactKey(vk)] = .storage(Storage(key: vk, dtype: root.dtype, byteCount: vn * size, location: root.location) {
                let s = try root.slice()
                return ByteSlice(region: s.region, offset: s.offset + off * size, count: vn * size)
            })
        }

        // tensors: count, then per tensor (key, storage key, class) + i32 ndim, pad, sizes, strides, offset
        try withMember("tensors") { tb in
            var p = try runEmbeddedPickle(tb, at: 0, file: file, member: "tensors", options: options)
            guard case let .int(tensorCount) = p.value, tensorCount >= 0, tensorCount <= tb.count / 8 else {
                throw FormatError(.corrupt, file: file, member: "tensors", offset: 0, "tensor count is not a small int")
            }
            var o = p.end
            for _ in 0 ..< tensorCount {
                p = try runEmbeddedPickle(tb, at: o, file: file, member: "tensors", options: options)
                guard case let .tuple(t) = p.value, t.count == 3, let key = table.keyString(t[0]) else {
                    throw FormatError(.corrupt, file: file, member: "tensors", offset: o, "tensor header is not (key, storage key, class)")
                }
                o = p.end
                guard o <= tb.count - 8 else { throw FormatError(.truncated, file: file, member: "tensors", offset: o, "ends inside tensor metadata") }
                let ndim = Int(tb.loadUnaligned(fromByteOffset: o, as: Int32.self))
                guard ndim >= 0, ndim <= 64, 8 + ndim * 16 + 8 <= tb.count - o else {
                    throw FormatError(.corrupt, file: file, member: "tensors", offset: o, "tensor \(key) has \(ndim) dimensions or is cut short")
                }
                var q = o + 8
                var shape: [Int] = [], strides: [Int] = []
                for _ in 0 ..< ndim { shape.append(Int(tb.loadUnaligned(fromByteOffset: q, as: Int64.self))); q += 8 }
                for _ in 0 ..< ndim { strides.append(Int(tb.loadUnaligned(fromByteOffset: q, as: Int64.self))); q += 8 }
                let offset = Int(tb.loadUnaligned(fromByteOffset: q, as: Int64.self))
                o = q + 8
                guard case let .global(cls) = t[2], let d = DType(legacyTensorClassName: cls.name) else {
                    throw FormatError(.corrupt, file: file, member: "tensors", "tensor \(key) class is not a torch tensor class")
                }
                if case .none = t[1] {
                    let empty = Storage(key: key + ".empty", dtype: d, bytes: [])
                    objects[ExactKey(key)] = .tensor(try Tensor(storage: empty, dtype: d, shape: shape.map { _ in 0 }, strides: strides.map { _ in 0 }, storageOffset: 0))
                    continue
                }
                guard let sk = table.keyString(t[1]), case let .storage(s)? = objects[ExactKey(sk)] else {
                    throw FormatError(.corrupt, file: file, member: "tensors", "tensor \(key) names a missing storage")
                }
                do {
                    objects[ExactKey(key)] = .tensor(try Tensor(storage: s, dtype: d, shape: shape, strides: strides, storageOffset: offset))
                } catch {
                    throw FormatError(.corrupt, file: file, member: "tensors", "tensor \(key): \(error)")
                }
            }
        }

        // the main pickle: string persistent ids look objects up in the two tables
        let main = try withMember("pickle") { try runEmbeddedPickle($0, at: 0, file: file, member: "pickle", options: options) { pid in
            if let key = table.keyString(pid), let obj = objects[ExactKey(key)] { return obj }
            if case let .tuple(t) = pid, t.count == 3 {
                guard options.salvage else {
                    throw FormatError(.refused, file: file, member: "pickle", "the file is a whole pickled nn.Module (its class source is embedded); use --salvage to list its tensors")
                }
                // the class the record names (`('module', cls, source)`), or a placeholder
                if t.count > 1, case let .global(cls) = t[1] { return .object(OpaqueObject(global: cls, construction: .reference)) }
                return .object(OpaqueObject(global: QualifiedName("torch.nn", "Module"), construction: .reference))
            }
            // burn-store style: _rebuild_tensor_v2 with zip-style 5-tuple ids
            if case .tuple = pid { return try table.loadZipPID(pid) }
            throw FormatError(.corrupt, file: file, member: "pickle", "persistent id '\(pid.pathComponent.prefix(40))' names no tensor or storage")
        } }
        info.record(main.unpickler)
        try SparseValidation.check(main.value, info: info, file: file, member: "pickle")
        return Checkpoint(root: main.value, info: info)
    }
}
