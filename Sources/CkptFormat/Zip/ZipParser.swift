#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Random access to the bytes of a zip file: a mapping, or `pread` through a small cache.
protocol ZipByteSource {
    var count: Int { get }
    subscript(_ i: Int) -> UInt8 { get }
    /// A copy of bytes `range` (the caller checked the bounds).
    func copy(_ range: Range<Int>) -> [UInt8]
}

extension UnsafeRawBufferPointer: ZipByteSource {
    func copy(_ range: Range<Int>) -> [UInt8] { Array(self[range]) }
}

/// A file read with `pread` in 4 KiB blocks, a few kept: the end records, the central directory
/// and each local header are read, never the data between them, so a file far larger than the
/// address space parses in a few hundred KiB, and a mapped file's tensor pages are never faulted
/// in (with fault-around, touching each local header through the mapping made 64 KiB per record
/// resident). A failed read gives zeros and is kept in `failure`, which the caller reports
/// instead of whatever those zeros made the parser say.
final class FileBytes: ZipByteSource {
    let fd: Int32
    let count: Int
    /// Offset in the file of byte 0.
    let base: Int
    private(set) var failure: String?
    private var blocks: [(index: Int, data: [UInt8])] = []
    /// The block read last (most reads fall in it).
    private var last = -1
    private static let shift = 12
    private static let kept = 16

    init(fd: Int32, base: Int, count: Int) {
        self.fd = fd
        self.base = base
        self.count = count
    }

    subscript(_ i: Int) -> UInt8 {
        let b = i >> FileBytes.shift
        if last >= 0, blocks[last].index == b { return blocks[last].data[i - (b << FileBytes.shift)] }
        if let k = blocks.lastIndex(where: { $0.index == b }) {
            last = k
            return blocks[k].data[i - (b << FileBytes.shift)]
        }
        let start = b << FileBytes.shift
        let n = min(1 << FileBytes.shift, count - start)
        var data = [UInt8](repeating: 0, count: n)
        if let f = data.withUnsafeMutableBytes({ preadFully(fd, $0, at: base + start) }), failure == nil { failure = f }
        if blocks.count >= FileBytes.kept { blocks.removeFirst() }
        blocks.append((b, data))
        last = blocks.count - 1
        return data[i - start]
    }

    func copy(_ range: Range<Int>) -> [UInt8] { range.map { self[$0] } }
}

/// Strict parsing of a zip's end records and central directory (APPNOTE 6.3, zip64 included),
/// checking every entry against its local header. All arithmetic on file-supplied numbers is
/// checked; nothing is allocated from a declared size.
struct ZipParser<Bytes: ZipByteSource> {
    let bytes: Bytes
    let file: String

    private func fail(_ kind: FormatError.Kind, _ member: String?, _ offset: Int?, _ m: String) -> FormatError {
        FormatError(kind, file: file, member: member, offset: offset, m)
    }

    private func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
    private func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
    private func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }

    private func has(_ o: Int, _ n: Int) -> Bool { o >= 0 && n >= 0 && o <= bytes.count && n <= bytes.count - o }

    private func int64(_ v: UInt64, _ what: String, _ member: String?, _ at: Int) throws -> Int {
        guard v <= UInt64(Int.max) else { throw fail(.corrupt, member, at, "\(what) \(v) is out of range") }
        return Int(v)
    }

    /// Finds the end-of-central-directory record: the one whose comment reaches exactly to the
    /// end of the file. Two such records (a fake one in the comment) are ambiguous and refused.
    private func findEOCD() throws -> Int {
        guard bytes.count >= 22 else { throw fail(.truncated, nil, nil, "file of \(bytes.count) bytes is too short for a zip archive") }
        let lowest = max(0, bytes.count - 22 - 0xFFFF)
        var found: [Int] = []
        var o = bytes.count - 22
        while o >= lowest {
            if bytes[o] == 0x50, bytes[o + 1] == 0x4B, bytes[o + 2] == 5, bytes[o + 3] == 6,
               o + 22 + u16(o + 20) == bytes.count {
                found.append(o)
            }
            o -= 1
        }
        guard let eocd = found.first else {
            throw fail(.truncated, nil, nil, "no end-of-central-directory record (truncated or not a zip)")
        }
        if found.count > 1 {
            throw fail(.refused, nil, found[1], "more than one end-of-central-directory record (one hides in the comment)")
        }
        return eocd
    }

    func parseAll() throws -> ZipDirectory {
        let eocd = try findEOCD()
        guard u16(eocd + 4) == 0, u16(eocd + 6) == 0 else {
            throw fail(.unsupported, nil, eocd, "multi-disk archive")
        }
        var count = u16(eocd + 10)
        var cdSize = u32(eocd + 12)
        var cdOffset = u32(eocd + 16)
        var cdLimit = eocd // the central directory must end before this
        let loc = eocd - 20
        if loc >= 0, u32(loc) == 0x0706_4B50 {
            let z64 = try int64(u64(loc + 8), "zip64 end record offset", nil, loc)
            guard has(z64, 56), u32(z64) == 0x0606_4B50 else {
                throw fail(.corrupt, nil, loc, "zip64 locator points to \(z64), where there is no zip64 end record")
            }
            guard z64 + 56 <= loc else { throw fail(.corrupt, nil, z64, "zip64 end record overlaps its locator") }
            let n64 = u64(z64 + 32)
            let size64 = u64(z64 + 40)
            let off64 = u64(z64 + 48)
            guard n64 <= UInt64(bytes.count / 46) else {
                throw fail(.corrupt, nil, z64, "zip64 end record declares \(n64) entries in a \(bytes.count)-byte file")
            }
            count = Int(n64)
            cdSize = try int64(size64, "central directory size", nil, z64)
            cdOffset = try int64(off64, "central directory offset", nil, z64)
            cdLimit = z64
        } else if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            throw fail(.corrupt, nil, eocd, "end record needs zip64 values but there is no zip64 locator")
        }
        guard cdOffset <= cdLimit, cdSize <= cdLimit - cdOffset else {
            throw fail(.corrupt, nil, eocd, "central directory at \(cdOffset) of \(cdSize) bytes lies past the end records (\(cdLimit))")
        }
        guard count <= cdSize / 46 + 1 else {
            throw fail(.corrupt, nil, eocd, "\(count) entries cannot fit in a \(cdSize)-byte central directory")
        }
        var entries = ZipDirectory()
        // names, extras and comments fill what the fixed 46 bytes an entry leave of the directory
        // (at most 64 MiB reserved at once: a directory of large extras grows as names come)
        entries.reserve(count, nameBytes: min(max(0, cdSize - 46 * count), 64 << 20))
        var o = cdOffset
        let cdEnd = cdOffset + cdSize
        for i in 0 ..< count {
            guard o + 46 <= cdEnd, u32(o) == 0x0201_4B50 else {
                throw fail(.corrupt, nil, o, "central directory entry \(i) is missing or cut short")
            }
            let (e, next) = try parseEntry(at: o, index: i, cdEnd: cdEnd, dataLimit: cdOffset)
            entries.append(nameBytes: Array(e.name.utf8), method: e.method, flags: e.flags, crc32: e.crc32,
                           compressedSize: e.compressedSize, size: e.size, localHeaderOffset: e.localHeaderOffset,
                           dataOffset: e.dataOffset)
            o = next
        }
        try checkOverlaps(entries, cdOffset: cdOffset)
        return entries
    }

    private func parseEntry(at o: Int, index: Int, cdEnd: Int, dataLimit: Int) throws -> (entry: ZipEntry, next: Int) {
        let flags = u16(o + 8)
        let method = u16(o + 10)
        let crc = UInt32(u32(o + 16))
        var csize = UInt64(u32(o + 20))
        var usize = UInt64(u32(o + 24))
        let nameLen = u16(o + 28)
        let extraLen = u16(o + 30)
        let commentLen = u16(o + 32)
        let disk = u16(o + 34)
        var lho = UInt64(u32(o + 42))
        let next = o + 46 + nameLen + extraLen + commentLen
        guard next <= cdEnd else { throw fail(.corrupt, nil, o, "central directory entry \(index) runs past the directory") }
        let nameBytes = bytes.copy(o + 46 ..< o + 46 + nameLen)
        guard let name = String(validating: nameBytes, as: UTF8.self) else {
            throw fail(.corrupt, nil, o, "entry \(index) name is not valid utf-8")
        }
        // zip64 extra: only the fields whose classic value overflowed, in the order usize, csize, offset
        var x = o + 46 + nameLen
        let xEnd = x + extraLen
        while x + 4 <= xEnd {
            let id = u16(x), len = u16(x + 2)
            guard x + 4 + len <= xEnd else { throw fail(.corrupt, name, o, "extra field runs past its entry") }
            if id == 0x0001 {
                var f = x + 4
                func take() throws -> UInt64 {
                    guard f + 8 <= x + 4 + len else { throw fail(.corrupt, name, o, "zip64 extra field too short") }
                    defer { f += 8 }
                    return u64(f)
                }
                if usize == 0xFFFF_FFFF { usize = try take() }
                if csize == 0xFFFF_FFFF { csize = try take() }
                if lho == 0xFFFF_FFFF { lho = try take() }
            }
            x += 4 + len
        }
        guard disk == 0 || disk == 0xFFFF else { throw fail(.unsupported, name, o, "entry on disk \(disk)") }
        if flags & 0x0001 != 0 || flags & 0x0040 != 0 {
            throw fail(.refused, name, o, "entry is encrypted")
        }
        if flags & 0x0020 != 0 { throw fail(.refused, name, o, "entry uses patched data (flag 0x20)") }
        try checkName(name, o)
        let size = try int64(usize, "uncompressed size", name, o)
        let compressed = try int64(csize, "compressed size", name, o)
        let local = try int64(lho, "local header offset", name, o)
        guard has(local, 30), u32(local) == 0x0403_4B50 else {
            throw fail(.corrupt, name, local, "no local header where the central directory points")
        }
        let lNameLen = u16(local + 26), lExtraLen = u16(local + 28)
        guard has(local + 30, lNameLen + lExtraLen) else { throw fail(.truncated, name, local, "local header cut short") }
        let lName = bytes.copy(local + 30 ..< local + 30 + lNameLen)
        guard lName == nameBytes else {
            throw fail(.refused, name, local, "local header names '\(String(decoding: lName, as: UTF8.self))', central directory names '\(name)'")
        }
        guard u16(local + 8) == method else {
            throw fail(.refused, name, local, "local header method \(u16(local + 8)) differs from the central directory's \(method)")
        }
        let dataOffset = local + 30 + lNameLen + lExtraLen
        if method == 0, compressed != size {
            throw fail(.corrupt, name, local, "stored entry with compressed size \(compressed) != size \(size)")
        }
        guard dataOffset <= dataLimit, compressed <= dataLimit - dataOffset else {
            throw fail(.truncated, name, dataOffset, "data of \(compressed) bytes runs past the end of the records (\(dataLimit))")
        }
        let entry = ZipEntry(index: index, name: name, method: UInt16(method), flags: UInt16(flags), crc32: crc,
                             compressedSize: compressed, size: size, localHeaderOffset: local, dataOffset: dataOffset)
        return (entry, next)
    }

    /// Refuses names that could escape or alias: `..` components, absolute paths, backslashes, NUL.
    private func checkName(_ name: String, _ o: Int) throws {
        if name.isEmpty { throw fail(.refused, name, o, "empty entry name") }
        if name.hasPrefix("/") || name.contains("\\") || name.contains("\0") || (name.count > 1 && name.dropFirst().hasPrefix(":")) {
            throw fail(.refused, name, o, "entry name is absolute or contains a backslash or nul")
        }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains(where: { $0 == ".." || $0 == "." }) {
            throw fail(.refused, name, o, "entry name contains a '..' or '.' component")
        }
    }

    /// Two entries may not share bytes (the overlapping-entries zip bomb), and no data may run
    /// into the next local header.
    private func checkOverlaps(_ entries: ZipDirectory, cdOffset: Int) throws {
        // positions, not entries, are sorted: no name is made unless one is refused
        let sorted = entries.indices.map { Int32(truncatingIfNeeded: $0) }.sorted {
            entries.localHeaderOffset(Int($0)) < entries.localHeaderOffset(Int($1))
        }
        for (a, b) in zip(sorted, sorted.dropFirst()) where entries.localHeaderOffset(Int(b)) < entries.dataEnd(Int(a)) {
            throw fail(.refused, entries.name(Int(b)), entries.localHeaderOffset(Int(b)), "entry overlaps the data of '\(entries.name(Int(a)))'")
        }
    }
}
