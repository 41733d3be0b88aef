import CkptTensor

/// Turns persistent ids into `Storage` objects, one per key, so tensors that name the same key
/// share one storage. Shared by the zip, legacy and tar readers, which differ only in where a
/// key's bytes live.
final class StorageTable {
    /// Where a storage's bytes are: a lazy loader of its own, or a record of the file's one loader.
    enum Bytes {
        case loader(@Sendable () throws -> ByteSlice)
        case record(RecordLoader, Int)
    }

    /// Where a storage's bytes are: resolves (key, byte count) to `Bytes`, or throws.
    typealias Locate = (_ key: String, _ dtype: DType, _ byteCount: Int) throws -> Bytes

    let file: String
    let member: String
    let byteOrder: ByteOrder
    private let locate: Locate
    /// The storages in first-reference order.
    private(set) var list: [Storage] = []
    /// Positions in `list` by key.
    private var index = KeyIndex()

    init(file: String, member: String, byteOrder: ByteOrder, locate: @escaping Locate) {
        self.file = file
        self.member = member
        self.byteOrder = byteOrder
        self.locate = locate
    }

    private func fail(_ kind: FormatError.Kind, _ m: String) -> FormatError {
        FormatError(kind, file: file, member: member, m)
    }

    /// The dtype a storage class global stands for (`torch.FloatStorage` → float32,
    /// `torch.storage.UntypedStorage` → uint8 bytes).
    func dtype(ofStorageClass v: Value) throws -> DType {
        guard case let .global(g) = v else {
            // torch reads `storage_type.dtype`: a dtype in this place fails there, so ckpt refuses it too
            throw fail(.corrupt, "storage type is a \(v.typeName), expected a storage class (torch.FloatStorage, torch.storage.UntypedStorage)")
        }
        if g == QualifiedName("torch.storage", "UntypedStorage") { return .uint8 }
        guard g.module == "torch" || g.module == "torch.cuda" else {
            throw fail(.corrupt, "storage type \(g) is not a torch storage class")
        }
        if let d = DType(storageClassName: g.name) {
            guard !d.isQuantized || d.quantizedStorageType != nil else {
                throw fail(.unsupported, "quantized storage \(g) packs several elements per byte (ckpt reads qint8, quint8 and qint32 tensors, not quint4x2/quint2x4)")
            }
            return d
        }
        // a tensor class has a dtype too, and torch reads `storage_type.dtype`
        if let d = DType(legacyTensorClassName: g.name) { return d }
        throw fail(.corrupt, "storage type \(g) is not a torch storage class")
    }

    /// The storage for `key`, creating it on first use.
    /// - Throws: when the key is not a plain record name, the record is missing or its size
    ///   differs from `numel × element size`, or one key is used with two dtypes.
    func storage(key: String, dtype: DType, numel: Int, location: String) throws -> Storage {
        guard !key.isEmpty, !key.contains("/"), !key.contains("\\"), key != "..", key != ".", !key.contains("\0") else {
            throw fail(.refused, "storage key '\(key.prefix(80))' is not a plain record name")
        }
        guard numel >= 0 else { throw fail(.corrupt, "storage \(key) declares \(numel) elements") }
        guard let bytes = Checked.mul(numel, dtype.itemSize) else {
            throw fail(.corrupt, "storage \(key): \(numel) elements of \(dtype.rawValue) overflow 64 bits")
        }
        if let s = self.storage(key: key) {
            guard s.dtype == dtype || s.byteCount == 0 || bytes == 0 else {
                throw fail(.corrupt, "storage \(key) is used as both \(s.dtype.rawValue) and \(dtype.rawValue)")
            }
            guard s.byteCount == bytes else {
                throw fail(.corrupt, "storage \(key) is declared with \(s.byteCount) and \(bytes) bytes")
            }
            return s
        }
        let s: Storage
        switch try locate(key, dtype, bytes) {
        case let .loader(loader):
            s = Storage(key: key, dtype: dtype, byteCount: bytes, byteOrder: byteOrder, location: location, loader: loader)
        case let .record(records, i):
            s = Storage(key: key, dtype: dtype, byteCount: bytes, byteOrder: byteOrder, location: location, records: records, index: i)
        }
        index.insert(list.count, hash: KeyIndex.hash(key)) { KeyIndex.hash(list[$0].key) }
        list.append(s)
        return s
    }

    /// The storage already made for `key`, if any.
    func storage(key: String) -> Storage? {
        index.find(hash: KeyIndex.hash(key)) { list[$0].key.sameScalars(key) }.map { list[$0] }
    }

    /// Interprets a zip-form persistent id `('storage', cls, key, location, numel)`.
    func loadZipPID(_ pid: Value) throws -> Value {
        guard case let .tuple(t) = pid else { throw fail(.corrupt, "persistent id is a \(pid.typeName), expected a tuple") }
        guard let tag = t.first, tag.stringValue == "storage" || bytesEqual(tag, "storage") else {
            throw fail(.corrupt, "persistent id does not start with 'storage'")
        }
        guard t.count == 5 else { throw fail(.corrupt, "persistent id has \(t.count) fields, expected 5") }
        let d = try dtype(ofStorageClass: t[1])
        guard let key = keyString(t[2]) else { throw fail(.corrupt, "storage key is a \(t[2].typeName)") }
        guard case let .int(numel) = t[4] else { throw fail(.corrupt, "storage \(key) size is a \(t[4].typeName), expected an int") }
        return .storage(try storage(key: key, dtype: d, numel: numel, location: t[3].stringValue ?? "cpu"))
    }

    func keyString(_ v: Value) -> String? {
        switch v {
        case let .string(s): return s
        case let .int(i): return String(i)
        case let .bytes(b): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }

    private func bytesEqual(_ v: Value, _ s: String) -> Bool {
        if case let .bytes(b) = v { return b == Array(s.utf8) }
        return false
    }
}
