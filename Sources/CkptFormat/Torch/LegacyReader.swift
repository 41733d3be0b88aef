import CkptTensor

/// Reads the legacy magic-number stream (torch 0.1.10–1.5, and `_use_new_zipfile_serialization=False`):
/// magic, protocol, sys_info, the main pickle, the sorted key list, then `i64 numel` + raw bytes per key.
/// Every pickle of the stream goes through the same restricted unpickler.
/// Counterpart: `torch.serialization._legacy_load`.
enum LegacyReader {
    static let magicDecimal = "119547037146038801333356" // 0x1950A86A20F9469CFC6C

    /// True when the stream starts with a pickle of the legacy magic number.
    static func looksLegacy(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 2, bytes[0] == 0x80 else { return false }
        let head = UnsafeRawBufferPointer(rebasing: bytes[0 ..< min(bytes.count, 64)])
        let u = Unpickler(bytes: head, file: "", member: "", options: UnpickleOptions(), persistentLoad: nil)
        guard let v = try? u.run(), case let .bigInt(s) = v else { return false }
        return s == magicDecimal
    }

    /// Reads the stream in `region`; its pickles run in windows and its record headers are read
    /// with `pread`, so the region need not be mapped whole and no tensor page is touched.
    static func read(_ region: ByteRegion, file: String, options: UnpickleOptions) throws -> Checkpoint {
        let stream = StreamBytes(region: region, file: file)
        var info = FormatInfo(format: .legacy)
        let magic = try stream.pickle(member: "magic", at: 0, options: options)
        guard case let .bigInt(m) = magic.value, m == magicDecimal else {
            throw FormatError(.corrupt, file: file, member: "magic", offset: 0, "not the torch legacy magic number")
        }
        let proto = try stream.pickle(member: "protocol", at: magic.end, options: options)
        guard case .int(1001) = proto.value else {
            throw FormatError(.unsupported, file: file, member: "protocol", offset: magic.end, "legacy protocol version \(proto.value.pathComponent), expected 1001")
        }
        let sys = try stream.pickle(member: "sys_info", at: proto.end, options: options)
        guard case .dict = sys.value else {
            throw FormatError(.corrupt, file: file, member: "sys_info", offset: proto.end, "sys_info is a \(sys.value.typeName), expected a dict")
        }

        let index = RecordIndex()
        let table = StorageTable(file: file, member: "main pickle", byteOrder: .little) { key, _, count in
            return .loader {
                guard let r = index.ranges[ExactKey(key)] else {
                    throw FormatError(.corrupt, file: file, member: "storage \(key)", "storage has no record in the stream")
                }
                guard r.count == count else {
                    throw FormatError(.corrupt, file: file, member: "storage \(key)", offset: r.offset, "record holds \(r.count) bytes, the pickle declares \(count)")
                }
                return stream.part(offset: r.offset, count: r.count)
            }
        }
        var views: [ExactKey: Storage] = [:]
        let load: Unpickler.PersistentLoad = { pid in
            guard case let .tuple(t) = pid, t.count == 6, t[0].stringValue == "storage" else {
                if case let .tuple(t) = pid, t.first?.stringValue == "module" {
                    guard options.salvage else {
                        throw FormatError(.refused, file: file, member: "main pickle", "the file is a whole pickled nn.Module (its class source is embedded); use --salvage to list its tensors")
                    }
                    // the class the record names (`('module', cls, source_file, source)`), or a placeholder
                    if t.count > 1, case let .global(cls) = t[1] { return .object(OpaqueObject(global: cls, construction: .reference)) }
                    return .object(OpaqueObject(global: QualifiedName("torch.nn", "Module"), construction: .reference))
                }
                throw FormatError(.corrupt, file: file, member: "main pickle", "persistent id is not ('storage', cls, key, location, numel, view)")
            }
            let d = try table.dtype(ofStorageClass: t[1])
            guard let key = table.keyString(t[2]), case let .int(numel) = t[4] else {
                throw FormatError(.corrupt, file: file, member: "main pickle", "persistent id key or size has the wrong type")
            }
            let root = try table.storage(key: key, dtype: d, numel: numel, location: t[3].stringValue ?? "cpu")
            guard case let .tuple(view) = t[5] else { return .storage(root) }
            // (view_key, offset, view_numel): a sub-storage of root, in elements (torch 0.1.10–0.3)
            guard view.count == 3, let vk = table.keyString(view[0]), case let .int(off) = view[1], case let .int(vn) = view[2],
                  off >= 0, vn >= 0, let end = Checked.add(off, vn), let endBytes = Checked.mul(end, d.itemSize), endBytes <= root.byteCount else {
                throw FormatError(.corrupt, file: file, member: "main pickle", "storage view of \(key) is malformed or out of range")
            }
            if let v = views[ExactKey(vk)] { return .storage(v) }
            let v = Storage(key: vk, dtype: d, byteCount: vn * d.itemSize, byteOrder: .little, location: root.location) {
                let s = try root.slice()
                return ByteSlice(region: s.region, offset: s.offset + off * d.itemSize, count: vn * d.itemSize)
            }
            views[ExactKey(vk)] = v
            return .storage(v)
        }
        let main = try stream.pickle(member: "main pickle", at: sys.end, options: options, persistentLoad: load)
        let keysPickle = try stream.pickle(member: "storage keys", at: main.end, options: options)
        guard case let .list(keyValues) = keysPickle.value else {
            throw FormatError(.corrupt, file: file, member: "storage keys", offset: main.end, "key list is a \(keysPickle.value.typeName)")
        }
        var o = keysPickle.end
        for kv in keyValues {
            guard let key = table.keyString(kv) else { throw FormatError(.corrupt, file: file, member: "storage keys", "key is a \(kv.typeName)") }
            guard let s = table.storage(key: key) else {
                throw FormatError(.corrupt, file: file, member: "storage \(key)", offset: o, "key list names a storage the pickle never used")
            }
            guard o <= region.count - 8 else { throw FormatError(.truncated, file: file, member: "storage \(key)", offset: o, "stream ends before the record size") }
            let numel = try stream.integer(Int64.self, at: o, member: "storage \(key)")
            guard numel >= 0, let n = Checked.mul(Int(numel), s.dtype.itemSize) else {
                throw FormatError(.corrupt, file: file, member: "storage \(key)", offset: o, "record declares \(numel) elements")
            }
            guard n == s.byteCount else {
                throw FormatError(.corrupt, file: file, member: "storage \(key)", offset: o, "record holds \(n) bytes, the pickle declares \(s.byteCount)")
            }
            guard n <= region.count - o - 8 else {
                throw FormatError(.truncated, file: file, member: "storage \(key)", offset: o, "record of \(n) bytes runs past the end of the file")
            }
            index.ranges[ExactKey(key)] = (o + 8, n)
            o += 8 + n
        }
        if let missing = table.list.lazy.map(\.key).first(where: { index.ranges[ExactKey($0)] == nil }) {
            throw FormatError(.corrupt, file: file, member: "storage \(missing)", "storage used by the pickle has no record")
        }
        if o != region.count { info.warnings.append("\(region.count - o) bytes after the last storage record") }
        for u in [magic.unpickler, proto.unpickler, sys.unpickler, main.unpickler, keysPickle.unpickler] { info.record(u) }
        info.pickleProtocol = main.unpickler.proto
        try SparseValidation.check(main.value, info: info, file: file, member: "pickle")
        return Checkpoint(root: main.value, info: info)
    }
}
