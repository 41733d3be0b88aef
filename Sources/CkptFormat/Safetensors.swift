import CkptTensor

// Reading huggingface safetensors: `u64 LE N`, N bytes of a JSON object (the header), then the
// byte buffer the header's `data_offsets` point into. Validation replicates the reference Rust
// reader (`safetensors/src/tensor.rs`, `read_metadata` + `Metadata::validate`): header cap,
// known dtype codes, checked sizes, offsets that tile the buffer exactly, string-only metadata.
//
// Offsets in errors are file offsets: the "header" member is the prefix [0, 8+N) of the file,
// and a tensor's errors point at its key in the header.

/// Reader for huggingface safetensors files. PyTorch counterpart: `safetensors.torch.load_file`.
public enum Safetensors {
    /// Largest header length accepted (the reference's `MAX_HEADER_SIZE`, "header too large").
    public static let maxHeaderLength = 100_000_000

    /// Deepest JSON nesting accepted in a header (serde_json's recursion limit).
    public static let maxHeaderDepth = 128

    /// Every dtype code the reference library knows, in its `Dtype` enum order (increasing
    /// alignment). The official writer sorts tensors by this order, descending.
    public static let knownDTypeCodes: [String] = [
        "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
        "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
        "F64", "I64", "U64",
    ]

    /// Codes the reference knows whose elements are narrower than a byte; ckpt refuses them.
    static let subByteCodes: Set<String> = ["F4", "F6_E2M3", "F6_E3M2"]

    /// Code → dtype for the codes ckpt reads.
    private static let dtypeByCode: [String: DType] = {
        var m: [String: DType] = [:]
        for d in DType.allCases { if let c = d.safetensorsCode { m[c] = d } }
        return m
    }()

    /// True when the file could be safetensors by section 0 rule 5: u64 N at 0 with
    /// 2 ≤ N ≤ 100,000,000, the header's first byte that is not JSON whitespace is `{` (the
    /// reference implementation parses the header with serde_json, which skips leading
    /// whitespace), and 8+N ≤ file size. `bytes` is the whole file.
    public static func looksLikeSafetensors(_ bytes: UnsafeRawBufferPointer) -> Bool {
        looksLikeSafetensors(prefix: bytes, fileSize: bytes.count)
    }

    /// As `looksLikeSafetensors(_:)` when only the first bytes (at least 9) are at hand.
    public static func looksLikeSafetensors(prefix: UnsafeRawBufferPointer, fileSize: Int) -> Bool {
        guard prefix.count >= 9 else { return false }
        let n = readU64LE(prefix)
        guard n >= 2, n <= UInt64(maxHeaderLength), 8 + Int(n) <= fileSize else { return false }
        var i = 8
        while i < min(prefix.count, 8 + Int(n)), isJSONWhitespace(prefix[i]) { i += 1 }
        return i < prefix.count && prefix[i] == UInt8(ascii: "{")
    }

    static func isJSONWhitespace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    /// Reads a safetensors file held in `region` (usually an mmap of the whole file). Tensors are
    /// zero-copy: each has a storage of its own whose bytes are a slice of `region`.
    ///
    /// The root is a `dict` of tensor name → tensor in data-offset order; `info.metadata` holds
    /// `__metadata__` in header order.
    /// - Throws: `FormatError` naming `file`, the member (`header` or the tensor name) and a file
    ///   offset: `.truncated` for a file shorter than its header or data, `.limit` for a header over
    ///   100,000,000 bytes or nested deeper than 128, `.corrupt` for invalid JSON or UTF-8, unknown
    ///   dtypes, bad shapes or offsets, holes, overlaps, trailing bytes, duplicate names and
    ///   non-string metadata, `.unsupported` for unknown dtype codes (`F128`, `f32`: codes are exact
    ///   and case-sensitive) and sub-byte dtypes (F4, F6_*), `.limit` for sizes that overflow 64 bits.
    public static func read(_ region: ByteRegion, file: String) throws -> Checkpoint {
        let size = region.count
        func headerError(_ kind: FormatError.Kind, _ offset: Int, _ message: String) -> FormatError {
            FormatError(kind, file: file, member: "header", offset: offset, message)
        }
        guard size >= 8 else {
            throw headerError(.truncated, 0, "file is \(size) bytes, expected at least 8 for the header length")
        }
        // the header only: of a file not mapped whole, just its first 8 + length bytes are mapped
        let head: ByteSlice
        do {
            let length = try region.copy(offset: 0, count: 8)
            let wanted = withExtendedLifetime(length) { readU64LE(length.bytes) }
            head = region.part(offset: 0, count: wanted > UInt64(size - 8) || wanted > UInt64(maxHeaderLength) ? 8 : 8 + Int(wanted))
            _ = try head.mappedBytes()
        } catch {
            throw FormatError(.io, file: file, member: "header", "\(error)")
        }
        let all = try head.mappedBytes()
        defer { withExtendedLifetime(head) {} }
        let n64 = readU64LE(all)
        guard n64 <= UInt64(maxHeaderLength) else {
            throw headerError(.limit, 0, "header length \(n64) exceeds the limit of \(maxHeaderLength) bytes")
        }
        let n = Int(n64)
        let dataStart = 8 + n
        guard dataStart <= size else {
            throw headerError(.truncated, 0, "header length \(n) needs \(dataStart) bytes, file has \(size)")
        }
        var first = 8
        while first < dataStart, isJSONWhitespace(all[first]) { first += 1 }
        guard first < dataStart, all[first] == UInt8(ascii: "{") else {
            let got = first >= dataStart ? (n == 0 ? "an empty header" : "only whitespace") : describeByte(all[first])
            throw headerError(.corrupt, first, "header must be a json object starting with '{', got \(got)")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: all[8 ..< dataStart])
        let members: [(key: String, keyOffset: Int, value: JSONValue)]
        do {
            members = try JSONValue.parseObjectMembers(
                headerBytes, options: JSONParseOptions(maxDepth: maxHeaderDepth),
                source: JSONSource(file: file, member: "header", baseOffset: 8))
        } catch var e as FormatError {
            // the header's length is known and present, so JSON that ends early is malformed
            if e.kind == .truncated { e.kind = .corrupt }
            throw e
        }

        var entries: [Entry] = []
        entries.reserveCapacity(members.count)
        var metadata: [(key: String, value: String)] = []
        // names compared by their Unicode scalars, as Python and serde compare them (not by
        // Swift's canonical equivalence: `café` in NFC and NFD are two names)
        var seen: [ExactKey: Int] = [:]
        for (index, m) in members.enumerated() {
            if let first = seen[ExactKey(m.key)] {
                throw FormatError(.corrupt, file: file, member: memberName(m.key), offset: m.keyOffset,
                                  "duplicate tensor name \(JSONValue.quoted(m.key, limit: 200)) in header (first at offset 0x\(String(first, radix: 16)))")
            }
            seen[ExactKey(m.key)] = m.keyOffset
            if m.key == "__metadata__" {
                metadata = try parseMetadata(m.value, offset: m.keyOffset, file: file)
            } else {
                entries.append(try parseEntry(name: m.key, value: m.value, offset: m.keyOffset, index: index, file: file))
            }
        }

        // Sort by (begin, end) as the reference does, then require an exact tiling of the buffer.
        entries.sort { ($0.begin, $0.end, $0.index) < ($1.begin, $1.end, $1.index) }
        let dataLength = size - dataStart
        var expected = 0
        var previous: Entry?
        for e in entries {
            if e.begin != expected {
                let prevText = previous.map { "tensor \(JSONValue.quoted($0.name, limit: 200)) ends at \($0.end)" } ?? "the buffer starts at 0"
                let what = e.begin < expected ? "overlaps the previous tensor" : "leaves a gap of \(e.begin - expected) bytes"
                throw FormatError(.corrupt, file: file, member: memberName(e.name), offset: e.offset,
                                  "data_offsets [\(e.begin), \(e.end)] \(what): expected begin \(expected) (\(prevText)), got \(e.begin)")
            }
            if e.end > dataLength {
                throw FormatError(.truncated, file: file, member: memberName(e.name), offset: e.offset,
                                  "data_offsets [\(e.begin), \(e.end)] reach past the end of the file: the data buffer holds \(dataLength) bytes")
            }
            expected = e.end
            previous = e
        }
        if expected != dataLength {
            throw headerError(.corrupt, dataStart + expected,
                              "\(dataLength - expected) trailing bytes after the last tensor: the data buffer holds \(dataLength) bytes, the tensors cover \(expected)")
        }

        var items: [(key: Value, value: Value)] = []
        items.reserveCapacity(entries.count)
        // one loader for the file, over the tensors' byte ranges: no closure per storage
        let ranges = entries.flatMap { [dataStart + $0.begin, $0.end - $0.begin] }
        let records = RecordLoader { [region] i in region.part(offset: ranges[2 * i], count: ranges[2 * i + 1]) }
        var lists = InternedLists()
        for (i, e) in entries.enumerated() {
            let storage = Storage(key: e.name, dtype: e.dtype, byteCount: e.end - e.begin, records: records, index: i)
            let tensor: Tensor
            do {
                tensor = try Tensor(storage: storage, dtype: e.dtype, shape: lists.interned(e.shape),
                                    strides: lists.interned(Tensor.contiguousStrides(e.shape)), storageOffset: 0)
            } catch {
                throw FormatError(.corrupt, file: file, member: memberName(e.name), offset: e.offset, "invalid tensor: \(error)")
            }
            items.append((.string(e.name), .tensor(tensor)))
        }
        var info = FormatInfo(format: .safetensors)
        info.metadata = metadata
        return Checkpoint(root: .dict(PyDict(items: items, kind: .dict)), info: info)
    }

    /// One tensor entry of the header, validated on its own.
    private struct Entry {
        var name: String
        var dtype: DType
        var shape: [Int]
        var begin: Int
        var end: Int
        var offset: Int
        var index: Int
    }

    private static func parseMetadata(_ value: JSONValue, offset: Int, file: String) throws -> [(key: String, value: String)] {
        func fail(_ message: String) -> FormatError {
            FormatError(.corrupt, file: file, member: "header", offset: offset, message)
        }
        switch value {
        case .null:
            return [] // `Option<HashMap<String, String>>` in the reference: null means absent
        case let .object(members):
            if let dup = value.firstDuplicateKey {
                throw fail("duplicate key \(JSONValue.quoted(dup.key, limit: 200)) in __metadata__")
            }
            return try members.map { m in
                guard case let .string(s) = m.value else {
                    throw fail("__metadata__ value of \(JSONValue.quoted(m.key, limit: 200)) is a json \(m.value.typeName), expected a string")
                }
                return (m.key, s)
            }
        default:
            throw fail("__metadata__ is a json \(value.typeName), expected an object of strings")
        }
    }

    private static func parseEntry(name: String, value: JSONValue, offset: Int, index: Int, file: String) throws -> Entry {
        func failKind(_ kind: FormatError.Kind, _ message: String) -> FormatError {
            FormatError(kind, file: file, member: memberName(name), offset: offset, message)
        }
        func fail(_ message: String) -> FormatError { failKind(.corrupt, message) }
        guard case .object = value else {
            throw fail("tensor entry is a json \(value.typeName), expected an object with dtype, shape and data_offsets")
        }
        if let dup = value.firstDuplicateKey {
            throw fail("duplicate field \(JSONValue.quoted(dup.key, limit: 200)) in tensor entry")
        }
        // dtype: an exact, case-sensitive code
        guard let dtypeValue = value["dtype"] else { throw fail("tensor entry has no dtype") }
        guard case let .string(code) = dtypeValue else { throw fail("dtype is a json \(dtypeValue.typeName), expected a string") }
        guard let dtype = dtypeByCode[code] else {
            guard knownDTypeCodes.contains(code) else {
                throw failKind(.unsupported, "unknown dtype \(JSONValue.quoted(code, limit: 40)), expected one of \(knownDTypeCodes.joined(separator: ", "))")
            }
            if subByteCodes.contains(code) {
                throw failKind(.unsupported, "dtype \(code) packs elements narrower than a byte; ckpt does not read it")
            }
            throw failKind(.unsupported, "dtype \(code) has no ckpt counterpart")
        }
        // shape: non-negative integers
        guard let shapeValue = value["shape"] else { throw fail("tensor entry has no shape") }
        guard case let .array(dims) = shapeValue else { throw fail("shape is a json \(shapeValue.typeName), expected an array of integers") }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for d in dims {
            shape.append(try nonNegativeInt(d, what: "shape dimension", failKind))
        }
        // data_offsets: exactly [begin, end]
        guard let offsetsValue = value["data_offsets"] else { throw fail("tensor entry has no data_offsets") }
        guard case let .array(offs) = offsetsValue else {
            throw fail("data_offsets is a json \(offsetsValue.typeName), expected [begin, end]")
        }
        guard offs.count == 2 else { throw fail("data_offsets has \(offs.count) items, expected 2 ([begin, end])") }
        let begin = try nonNegativeInt(offs[0], what: "data_offsets begin", failKind)
        let end = try nonNegativeInt(offs[1], what: "data_offsets end", failKind)
        guard begin <= end else { throw fail("data_offsets [\(begin), \(end)] are reversed: end is before begin") }

        guard let numel = Checked.product(shape) else {
            throw failKind(.limit, "element count of shape \(shape) overflows 64 bits")
        }
        guard let nbytes = Checked.mul(numel, dtype.itemSize) else {
            throw failKind(.limit, "byte count of shape \(shape) of \(code) overflows 64 bits (\(numel) elements × \(dtype.itemSize) bytes)")
        }
        guard end - begin == nbytes else {
            throw fail("data_offsets [\(begin), \(end)] hold \(end - begin) bytes, shape \(shape) of \(code) needs \(nbytes)")
        }
        return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end, offset: offset, index: index)
    }

    /// A non-negative JSON integer as `Int`; floats, negatives and values over 2^63−1 are refused
    /// (the reference's `usize` also refuses floats and negatives).
    private static func nonNegativeInt(_ v: JSONValue, what: String, _ fail: (FormatError.Kind, String) -> FormatError) throws -> Int {
        guard case let .number(n) = v else {
            throw fail(.corrupt, "\(what) is a json \(v.typeName), expected a non-negative integer")
        }
        guard n.isInteger else { throw fail(.corrupt, "\(what) \(n.text.prefix(40)) is not an integer") }
        if n.text.hasPrefix("-") && n.text != "-0" {
            throw fail(.corrupt, "\(what) \(n.text.prefix(40)) is negative, expected a non-negative integer")
        }
        guard let u = n.uint64Value else {
            throw fail(.corrupt, "\(what) \(n.text.prefix(40)) exceeds 2^64-1")
        }
        guard let i = Int(exactly: u) else {
            throw fail(.limit, "\(what) \(u) exceeds 2^63-1")
        }
        return i
    }

    /// A tensor name usable as an error's member: the name itself when it is short and printable,
    /// else its escaped and shortened JSON form, so errors stay on one line.
    static func memberName(_ name: String) -> String {
        let printable = name.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F }
        if printable && name.utf8.count <= 200 { return name }
        return JSONValue.quoted(name, limit: 200)
    }

    private static func describeByte(_ c: UInt8) -> String {
        if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x" + String(c, radix: 16)
    }

    static func readU64LE(_ b: UnsafeRawBufferPointer) -> UInt64 {
        var v: UInt64 = 0
        for i in 0 ..< 8 { v |= UInt64(b[i]) << (8 * UInt64(i)) }
        return v
    }
}
