import CkptTensor

/// Writes a zip archive the way torch's writer (miniz) lays it out: stored records only, each
/// record's data aligned to 64 bytes through an `FB` padding extra field in the local header,
/// CRC and sizes in a data descriptor after the data, zip64 fields once a size or offset
/// reaches 4 GiB. Streams through an `AtomicFileWriter`, so memory stays bounded by a chunk.
final class ZipWriter {
    private struct Central {
        var name: [UInt8]
        var crc: UInt32
        var size: Int
        var offset: Int
        var flags: UInt16
        /// The local header carried zip64 sizes (so the descriptor had 8-byte sizes).
        var big: Bool
    }

    static let alignment = 64
    private let out: AtomicFileWriter
    private var central: [Central] = []
    private let file: String
    /// Sizes and offsets from this value on take zip64 fields (0xFFFFFFFF; lower only in tests).
    private let zip64Threshold: Int

    init(_ out: AtomicFileWriter, file: String, zip64Threshold: Int = 0xFFFF_FFFF) {
        self.out = out
        self.file = file
        self.zip64Threshold = zip64Threshold
    }

    private func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    private func le32(_ v: Int) -> [UInt8] { (0 ..< 4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    private func le64(_ v: Int) -> [UInt8] { (0 ..< 8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    /// Writes one stored record whose `size` bytes `produce` supplies through its `write`
    /// callback (which may be called several times); returns after the data descriptor.
    func addRecord(_ name: String, size: Int, produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let nameBytes = Array(name.utf8)
        let offset = out.position
        let big = size >= zip64Threshold || offset >= zip64Threshold
        let empty = size == 0
        let flags: UInt16 = empty ? 0x0800 : 0x0808
        // local zip64 extra (as miniz writes it): usize and csize placeholders, then the FB padding
        var extra: [UInt8] = []
        if big { extra += le16(0x0001) + le16(16) + le64(0) + le64(0) }
        let start = offset + 30 + nameBytes.count + extra.count + 4
        let pad = (ZipWriter.alignment - start % ZipWriter.alignment) % ZipWriter.alignment
        extra += [0x46, 0x42] + le16(pad) + [UInt8](repeating: 0x5A, count: pad)
        var header: [UInt8] = [0x50, 0x4B, 0x03, 0x04]
        header += le16(big ? 45 : 0) + le16(Int(flags)) + le16(0) + le16(0) + le16(0)
        header += le32(0) + le32(0) + le32(0) // crc and sizes follow in the descriptor
        header += le16(nameBytes.count) + le16(extra.count)
        try out.write(header + nameBytes + extra)
        var crc: UInt32 = 0
        var written = 0
        try produce { chunk in
            crc = ZipArchive.crc32(chunk, seed: crc)
            written += chunk.count
            try self.out.write(chunk)
        }
        guard written == size else {
            throw FormatError(.io, file: file, member: name, "wrote \(written) bytes for a record declared as \(size)")
        }
        if !empty {
            var d: [UInt8] = [0x50, 0x4B, 0x07, 0x08] + le32(Int(crc))
            d += big ? le64(size) + le64(size) : le32(size) + le32(size)
            try out.write(d)
        }
        central.append(Central(name: nameBytes, crc: crc, size: size, offset: offset, flags: flags, big: big))
    }

    /// Writes a small record held in memory.
    func addRecord(_ name: String, bytes: [UInt8]) throws {
        try addRecord(name, size: bytes.count) { write in try bytes.withUnsafeBytes { try write($0) } }
    }

    /// Writes the central directory and the end records.
    func finish() throws {
        let cdOffset = out.position
        var needZip64 = central.count >= 0xFFFF
        for c in central {
            var extra: [UInt8] = []
            let sizeBig = c.size >= zip64Threshold || c.big
            let offBig = c.offset >= zip64Threshold
            if sizeBig || offBig {
                needZip64 = true
                var fields: [UInt8] = []
                if sizeBig { fields += le64(c.size) + le64(c.size) }
                if offBig { fields += le64(c.offset) }
                extra = le16(0x0001) + le16(fields.count) + fields
            }
            var h: [UInt8] = [0x50, 0x4B, 0x01, 0x02]
            h += le16(sizeBig || offBig ? 45 : 0) + le16(sizeBig || offBig ? 45 : 0)
            h += le16(Int(c.flags)) + le16(0) + le16(0) + le16(0) + le32(Int(c.crc))
            h += le32(sizeBig ? 0xFFFF_FFFF : c.size) + le32(sizeBig ? 0xFFFF_FFFF : c.size)
            h += le16(c.name.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0)
            h += le32(offBig ? 0xFFFF_FFFF : c.offset)
            try out.write(h + c.name + extra)
        }
        let cdSize = out.position - cdOffset
        if cdOffset >= zip64Threshold || cdSize >= zip64Threshold { needZip64 = true }
        if needZip64 {
            let z64 = out.position
            var r: [UInt8] = [0x50, 0x4B, 0x06, 0x06] + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
            r += le64(central.count) + le64(central.count) + le64(cdSize) + le64(cdOffset)
            r += [0x50, 0x4B, 0x06, 0x07] + le32(0) + le64(z64) + le32(1)
            try out.write(r)
        }
        var e: [UInt8] = [0x50, 0x4B, 0x05, 0x06] + le16(0) + le16(0)
        e += le16(min(central.count, 0xFFFF)) + le16(min(central.count, 0xFFFF))
        e += le32(min(cdSize, 0xFFFF_FFFF)) + le32(min(cdOffset, 0xFFFF_FFFF)) + le16(0)
        try out.write(e)
    }
}
