internal import CZip
import CkptTensor

/// One entry of a zip archive's central directory, with its data located through its local header.
public struct ZipEntry: Sendable {
    /// Position in the central directory.
    public let index: Int
    /// Entry name as stored (UTF-8).
    public let name: String
    /// 0 = stored, 8 = deflated.
    public let method: UInt16
    /// General-purpose flags.
    public let flags: UInt16
    /// CRC-32 from the central directory (0 when the writer disabled CRCs).
    public let crc32: UInt32
    /// Compressed size from the central directory (zip64-aware).
    public let compressedSize: Int
    /// Uncompressed size from the central directory (zip64-aware).
    public let size: Int
    /// Offset of the local header in the file.
    public let localHeaderOffset: Int
    /// Offset of the first data byte: local header + 30 + name and extra lengths read from the
    /// local header (torch's `getRecordOffset`).
    public let dataOffset: Int

    /// True for directory entries (`name/`).
    public var isDirectory: Bool { name.hasSuffix("/") }
}

/// A zip's central directory in a few flat arrays, names in one byte buffer: about 70 bytes an
/// entry where an array of `ZipEntry` (a `String` name each) and a name dictionary took 190, which
/// counts in a `torch.save` zip of 300,000 records. Entries are made on demand.
public struct ZipDirectory: RandomAccessCollection, Sendable {
    /// Every name's UTF-8 bytes, one after another.
    private var names: [UInt8] = []
    /// End of entry `i`'s name in `names` (it starts where entry `i - 1`'s ends).
    private var nameEnds: [Int] = []
    /// `method | flags << 16`.
    private var methodFlags: [UInt32] = []
    private var crcs: [UInt32] = []
    private var compressedSizes: [Int] = []
    private var sizes: [Int] = []
    private var localHeaderOffsets: [Int] = []
    private var dataOffsets: [Int] = []

    init() {}

    /// Room for `n` entries whose names take at most `nameBytes` bytes together.
    mutating func reserve(_ n: Int, nameBytes: Int) {
        names.reserveCapacity(nameBytes)
        nameEnds.reserveCapacity(n)
        methodFlags.reserveCapacity(n)
        crcs.reserveCapacity(n)
        compressedSizes.reserveCapacity(n)
        sizes.reserveCapacity(n)
        localHeaderOffsets.reserveCapacity(n)
        dataOffsets.reserveCapacity(n)
    }

    /// Appends an entry whose name is `nameBytes` (checked UTF-8); its index is `count`.
    mutating func append(nameBytes: [UInt8], method: UInt16, flags: UInt16, crc32: UInt32, compressedSize: Int,
                         size: Int, localHeaderOffset: Int, dataOffset: Int) {
        names += nameBytes
        nameEnds.append(names.count)
        methodFlags.append(UInt32(method) | UInt32(flags) << 16)
        crcs.append(crc32)
        compressedSizes.append(compressedSize)
        sizes.append(size)
        localHeaderOffsets.append(localHeaderOffset)
        dataOffsets.append(dataOffset)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { nameEnds.count }

    /// Entry `i` of the central directory.
    public subscript(i: Int) -> ZipEntry {
        ZipEntry(index: i, name: name(i), method: UInt16(truncatingIfNeeded: methodFlags[i]),
                 flags: UInt16(truncatingIfNeeded: methodFlags[i] >> 16), crc32: crcs[i],
                 compressedSize: compressedSizes[i], size: sizes[i], localHeaderOffset: localHeaderOffsets[i],
                 dataOffset: dataOffsets[i])
    }

    /// The UTF-8 bytes of entry `i`'s name.
    func nameBytes(_ i: Int) -> ArraySlice<UInt8> {
        names[(i == 0 ? 0 : nameEnds[i - 1]) ..< nameEnds[i]]
    }

    /// Entry `i`'s name.
    func name(_ i: Int) -> String { String(decoding: nameBytes(i), as: UTF8.self) }

    func isDirectory(_ i: Int) -> Bool { nameBytes(i).last == UInt8(ascii: "/") }
    func localHeaderOffset(_ i: Int) -> Int { localHeaderOffsets[i] }
    /// End of entry `i`'s data.
    func dataEnd(_ i: Int) -> Int { dataOffsets[i] + compressedSizes[i] }
}

/// A zip archive over a memory-mapped file. The central directory is parsed here, strictly:
/// sizes, CRCs and offsets come from it (zip64-aware); local headers are checked against it;
/// duplicate, case-variant, escaping, overlapping and encrypted entries are refused. Stored
/// records are returned as zero-copy slices of the mapping; deflated ones are inflated by libzip
/// into memory, bounded by their declared size. This is the only file that touches libzip/zlib.
public final class ZipArchive: @unchecked Sendable {
    /// The file name used in errors.
    public let file: String
    /// The whole file.
    public let region: ByteRegion
    /// Entries in central-directory order.
    public let entries: ZipDirectory
    /// Positions in `entries` of the non-directory entries, by exact name.
    private let byName: KeyIndex

    /// Largest record this archive inflates into memory (`UnpickleOptions.maxInflatedRecordSize`).
    public let maxInflatedSize: Int

    /// Parses the archive's central directory and checks every entry; deflated records of more
    /// than `maxInflatedSize` bytes are refused when read.
    /// - Throws: `FormatError` naming the entry and offset for anything malformed or hostile.
    public init(region: ByteRegion, file: String, maxInflatedSize: Int = UnpickleOptions().maxInflatedRecordSize) throws {
        self.file = file
        self.region = region
        self.maxInflatedSize = maxInflatedSize
        let list: ZipDirectory
        if region.fileDescriptor < 0 {
            list = try withExtendedLifetime(region) { try ZipParser(bytes: region.bytes, file: file).parseAll() }
        } else {
            // the end records, the central directory and the local headers are read with pread,
            // mapped or not: no tensor page is touched, and a file too large to map whole has its
            // records mapped one by one when asked for
            let source = FileBytes(fd: region.fileDescriptor, base: region.fileOffset, count: region.count)
            do {
                list = try ZipParser(bytes: source, file: file).parseAll()
            } catch {
                if let f = source.failure { throw FormatError(.io, file: file, "cannot read the zip directory: \(f)") }
                throw error
            }
            if let f = source.failure { throw FormatError(.io, file: file, "cannot read the zip directory: \(f)") }
        }
        entries = list
        var exact = KeyIndex()
        var folded = KeyIndex()
        // lower-cased names of the entries in `folded`, by position in `entries`; made again on a
        // hash collision only
        func lowered(_ i: Int) -> String { list.name(i).lowercased() }
        for i in list.indices where !list.isDirectory(i) {
            let bytes = list.nameBytes(i)
            let h = KeyIndex.hash(bytes)
            if exact.find(hash: h, { list.nameBytes($0).elementsEqual(bytes) }) != nil {
                throw FormatError(.refused, file: file, member: list.name(i), offset: list.localHeaderOffset(i), "duplicate entry name")
            }
            let lower = lowered(i)
            let lh = KeyIndex.hash(lower)
            if let other = folded.find(hash: lh, { lowered($0).sameScalars(lower) }) {
                throw FormatError(.refused, file: file, member: list.name(i), offset: list.localHeaderOffset(i), "entry name differs only in case from '\(list.name(other))'")
            }
            exact.insert(i, hash: h) { KeyIndex.hash(list.nameBytes($0)) }
            folded.insert(i, hash: lh) { KeyIndex.hash(lowered($0)) }
        }
        byName = exact
    }

    /// The entry named exactly `name`, if any (directory entries excluded).
    public func entry(named name: String) -> ZipEntry? {
        var n = name
        return n.withUTF8 { key in
            byName.find(hash: KeyIndex.hash(key)) { entries.nameBytes($0).elementsEqual(key) }.map { entries[$0] }
        }
    }

    /// A record's bytes: a zero-copy slice for stored records, an inflated copy for deflated ones.
    /// - Throws: `FormatError` for unsupported methods, sizes over the limit, inflate errors.
    public func read(_ e: ZipEntry) throws -> ByteSlice {
        switch e.method {
        case 0:
            // a window of its own when the file is not mapped whole: mapped when first read
            return region.part(offset: e.dataOffset, count: e.size)
        case 8:
            return ByteSlice(region: try inflate(e))
        default:
            throw FormatError(.unsupported, file: file, member: e.name, "compression method \(e.method) (ckpt reads stored and deflated records)")
        }
    }

    private func inflate(_ e: ZipEntry) throws -> ByteRegion {
        guard e.size <= maxInflatedSize else {
            throw FormatError(.limit, file: file, member: e.name, "deflated record declares \(e.size) bytes (limit \(maxInflatedSize))")
        }
        guard e.size <= e.compressedSize &* 1100 + 1024 else {
            throw FormatError(.corrupt, file: file, member: e.name, "declared size \(e.size) is impossible for \(e.compressedSize) deflated bytes")
        }
        // Inflate the raw deflate stream of this entry only: wrap its compressed bytes in a
        // one-entry view for libzip's own decompressor by giving zlib the stream directly.
        let compressed = region.part(offset: e.dataOffset, count: e.compressedSize)
        let src: UnsafeRawBufferPointer
        do {
            src = try compressed.mappedBytes()
        } catch {
            throw FormatError(.io, file: file, member: e.name, "\(error)")
        }
        return try withExtendedLifetime(compressed) { try ByteRegion.allocate(count: e.size) { dst in
            var stream = z_stream()
            var rc = inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            guard rc == Z_OK else { throw FormatError(.io, file: file, member: e.name, "zlib init failed") }
            defer { inflateEnd(&stream) }
            stream.next_in = UnsafeMutablePointer(mutating: src.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(src.count)
            stream.next_out = dst.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(dst.count)
            rc = CZip.inflate(&stream, Z_FINISH)
            guard rc == Z_STREAM_END || (rc == Z_BUF_ERROR && dst.count == 0) else {
                throw FormatError(.corrupt, file: file, member: e.name, "deflate stream is broken or longer than the declared \(e.size) bytes")
            }
            guard Int(stream.total_out) == e.size else {
                throw FormatError(.corrupt, file: file, member: e.name, "inflated \(stream.total_out) bytes, central directory says \(e.size)")
            }
            if e.crc32 != 0, ZipArchive.crc32(UnsafeRawBufferPointer(dst)) != e.crc32 {
                throw FormatError(.corrupt, file: file, member: e.name, "crc-32 mismatch after inflating")
            }
        } }
    }

    /// CRC-32 (zip's polynomial) of `bytes`, through zlib.
    public static func crc32(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        var crc = UInt(seed)
        var base = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
        var left = bytes.count
        while left > 0, let p = base {
            let n = min(left, 1 << 30)
            crc = CZip.crc32(crc, p, uInt(n))
            base = p + n
            left -= n
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    /// libzip's own reading of the archive agrees with ours on entry count and names (used by
    /// tests as a cross-check against parse differentials).
    public func libzipAgrees() -> Bool {
        var err = zip_error_t()
        zip_error_init(&err)
        defer { zip_error_fini(&err) }
        guard let src = zip_source_buffer_create(region.base, zip_uint64_t(region.count), 0, &err) else { return false }
        guard let z = zip_open_from_source(src, ZIP_RDONLY, &err) else {
            zip_source_free(src)
            return false
        }
        defer { zip_discard(z) }
        let n = zip_get_num_entries(z, 0)
        guard n == entries.count else { return false }
        for e in entries {
            guard let c = zip_get_name(z, zip_uint64_t(e.index), ZIP_FL_ENC_RAW), String(cString: c) == e.name else { return false }
        }
        return true
    }
}
