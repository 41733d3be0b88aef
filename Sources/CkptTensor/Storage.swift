#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation

/// An open file descriptor shared by the regions of one file, closed with the last of them.
final class OpenFile: @unchecked Sendable {
    let fd: Int32
    let path: String
    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }
    deinit { close(fd) }
}

/// A block of read-only bytes that stays valid while the object lives: an mmap of a whole file,
/// a window of a file mapped only when its bytes are first needed, or a heap allocation.
/// Storages point into one of these.
public final class ByteRegion: @unchecked Sendable {
    private let eagerBase: UnsafeRawPointer?
    /// Length in bytes.
    public let count: Int
    private let ownership: Ownership
    /// The file the region maps or reads (nil for memory).
    private let file: OpenFile?
    /// Offset in the file of the region's byte 0 (0 for a whole-file mapping).
    public let fileOffset: Int
    private let windowLock = NSLock()
    /// A window's mapping once made: the page-aligned address and length given to mmap.
    private var windowMapping: (address: UnsafeMutableRawPointer, length: Int)?

    /// Who frees the memory when the region dies.
    public enum Ownership: Sendable {
        /// Nobody: static or borrowed memory that outlives the region.
        case borrowed
        /// `UnsafeMutableRawPointer.allocate`d memory.
        case heap
        /// An `mmap` of `count` bytes.
        case mapped
        /// A range of a file, read with `pread` and mapped (just that range) only when its
        /// bytes are asked for: what ckpt uses when the whole file does not fit the address space.
        case window
    }

    /// Wraps memory that `ownership` says how to free.
    public init(base: UnsafeRawPointer?, count: Int, ownership: Ownership) {
        precondition(ownership != .window, "a window is made by ByteRegion.open or window(offset:count:)")
        self.eagerBase = base
        self.count = count
        self.ownership = ownership
        self.file = nil
        self.fileOffset = 0
    }

    private init(base: UnsafeRawPointer?, count: Int, ownership: Ownership, file: OpenFile?, fileOffset: Int) {
        self.eagerBase = base
        self.count = count
        self.ownership = ownership
        self.file = file
        self.fileOffset = fileOffset
    }

    /// First byte of the region (nil only when the region is empty, or when a window cannot be
    /// mapped: use `mapped()` where that must be an error).
    public var base: UnsafeRawPointer? {
        if ownership == .window { return try? mapped() }
        return eagerBase
    }

    /// The first byte if the memory is there now, without mapping a window.
    public var baseIfMapped: UnsafeRawPointer? {
        guard ownership == .window else { return eagerBase }
        windowLock.lock(); defer { windowLock.unlock() }
        return windowMapping.map { UnsafeRawPointer($0.address + (fileOffset - alignedFileOffset)) }
    }

    /// False only for a window whose bytes have not been mapped yet.
    public var isMapped: Bool { count == 0 || baseIfMapped != nil }

    private var alignedFileOffset: Int { fileOffset & ~(ByteRegion.pageSize - 1) }

    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// The first byte, mapping a window's range of the file now if it is not mapped yet.
    /// - Throws: `TensorError.io` naming the file when the range cannot be mapped (the address
    ///   space ckpt may use is too small): never a format error.
    public func mapped() throws -> UnsafeRawPointer? {
        guard ownership == .window, count > 0, let f = file else { return eagerBase }
        windowLock.lock(); defer { windowLock.unlock() }
        let start = alignedFileOffset
        if let m = windowMapping { return UnsafeRawPointer(m.address + (fileOffset - start)) }
        let length = fileOffset - start + count
        guard let m = mmap(nil, length, PROT_READ, MAP_PRIVATE, f.fd, off_t(start)), m != MAP_FAILED else {
            throw TensorError.io(path: f.path, message: "cannot map \(count) bytes at offset \(fileOffset): " + String(cString: strerror(errno))
                                 + " (the address space ckpt may use is too small for them)")
        }
        mappedFiles.insert(f.path)
        windowMapping = (m, length)
        return UnsafeRawPointer(m + (fileOffset - start))
    }

    /// Copies `bytes` into a new heap region.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        if n == 0 {
            self.init(base: nil, count: 0, ownership: .borrowed)
            return
        }
        let p = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        if let src = bytes.baseAddress { p.copyMemory(from: src, byteCount: n) }
        self.init(base: UnsafeRawPointer(p), count: n, ownership: .heap)
    }

    /// Takes ownership of an array of bytes.
    public convenience init(_ bytes: [UInt8]) {
        self.init(copying: bytes.withUnsafeBytes { $0 })
    }

    /// Allocations from this size on are anonymous mappings backed by transparent huge pages,
    /// which cuts page faults ~500× when large tensors are filled.
    public static let hugeAllocationThreshold = 4 << 20

    /// A new uninitialised region of `count` bytes (64-byte aligned), filled by `fill`.
    public static func allocate(count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows -> ByteRegion {
        if count == 0 { return ByteRegion(base: nil, count: 0, ownership: .borrowed) }
        #if os(Linux)
        if count >= hugeAllocationThreshold,
           let m = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), m != MAP_FAILED {
            _ = madvise(m, count, 14 /* MADV_HUGEPAGE */)
            let region = ByteRegion(base: UnsafeRawPointer(m), count: count, ownership: .mapped)
            try fill(UnsafeMutableRawBufferPointer(start: m, count: count))
            return region
        }
        #endif
        let p = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 64)
        do {
            try fill(UnsafeMutableRawBufferPointer(start: p, count: count))
        } catch {
            p.deallocate()
            throw error
        }
        return ByteRegion(base: UnsafeRawPointer(p), count: count, ownership: .heap)
    }

    /// Maps a whole file read-only. Touches no page until it is read.
    /// - Throws: `TensorError.io` when the file cannot be opened or mapped.
    public static func map(path: String) throws -> ByteRegion {
        try open(path: path, whole: true)
    }

    /// Opens a file for reading. `whole` nil: mapped whole when the address space allows, else
    /// an unmapped window over the file whose parts readers `pread` or map as they need them;
    /// true: mapped whole or an error; false: always a window (what a file larger than the
    /// address space gets; tests use it to read every file that way).
    /// - Throws: `TensorError.io` when the file cannot be opened (or, with `whole`, mapped).
    public static func open(path: String, whole: Bool? = nil) throws -> ByteRegion {
        // O_NONBLOCK: opening a FIFO read-only would otherwise wait for a writer forever; it has no
        // effect on a regular file's reads
        #if canImport(Glibc)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        #else
        let fd = Darwin.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        #endif
        if fd < 0 { throw TensorError.io(path: path, message: String(cString: strerror(errno))) }
        let f = OpenFile(fd: fd, path: path)
        var st = stat()
        if fstat(fd, &st) != 0 { throw TensorError.io(path: path, message: String(cString: strerror(errno))) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw TensorError.io(path: path, message: "is a directory")
        case S_IFIFO: throw TensorError.io(path: path, message: "is a pipe (FIFO): ckpt reads checkpoints from regular files (save the stream to a file first)")
        case S_IFCHR, S_IFBLK: throw TensorError.io(path: path, message: "is a device, not a regular file")
        default: throw TensorError.io(path: path, message: "is not a regular file")
        }
        let size = Int(st.st_size)
        if size == 0 { return ByteRegion(base: nil, count: 0, ownership: .borrowed) }
        if whole != false, let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED {
            mappedFiles.insert(path)
            return ByteRegion(base: UnsafeRawPointer(m), count: size, ownership: .mapped, file: f, fileOffset: 0)
        }
        if whole == true {
            throw TensorError.io(path: path, message: "mmap failed: " + String(cString: strerror(errno)))
        }
        return ByteRegion(base: nil, count: size, ownership: .window, file: f, fileOffset: 0)
    }

    /// Bytes `[offset, offset + count)` of this region as a region of its own: a window of the
    /// same file (mapped only when its bytes are asked for) when this region is a window, else
    /// nil (slice this region instead).
    public func window(offset: Int, count n: Int) -> ByteRegion? {
        guard ownership == .window, let f = file else { return nil }
        precondition(offset >= 0 && n >= 0 && offset <= count && n <= count - offset)
        if n == 0 { return ByteRegion(base: nil, count: 0, ownership: .borrowed) }
        return ByteRegion(base: nil, count: n, ownership: .window, file: f, fileOffset: fileOffset + offset)
    }

    /// Bytes `[offset, offset + count)` as a slice: of a window of its own when this region is a
    /// window (so only that range is ever mapped), else of this region.
    public func part(offset: Int, count n: Int) -> ByteSlice {
        if let w = window(offset: offset, count: n) { return ByteSlice(region: w) }
        return ByteSlice(region: self, offset: offset, count: n)
    }

    /// A heap copy of bytes `[offset, offset + count)`, read with `pread` when the region is a
    /// file (nothing is mapped), else copied.
    /// - Throws: `TensorError.io` when the file gives fewer bytes (it changed underneath).
    public func copy(offset: Int, count n: Int) throws -> ByteRegion {
        precondition(offset >= 0 && n >= 0 && offset <= count && n <= count - offset)
        return try ByteRegion.allocate(count: n) { dst in
            try ByteSlice(region: self, offset: offset, count: n).copy(into: dst)
        }
    }

    /// The region's bytes (a window is mapped first; see `mapped()` for an error instead).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : count) }

    /// True when the region is a read-only mapping of a file (whose pages may be dropped and
    /// read again), not heap or anonymous memory.
    public var isFileMapping: Bool {
        (ownership == .mapped || ownership == .window) && file != nil
    }

    /// An open descriptor of the file the region maps or reads, so bulk reads can use `pread`
    /// instead of faulting the mapping page by page; -1 for memory.
    public var fileDescriptor: Int32 { file?.fd ?? -1 }

    /// The path of the file the region maps or reads, if any.
    public var filePath: String? { file?.path }

    deinit {
        switch ownership {
        case .borrowed: break
        case .heap: if let b = eagerBase { UnsafeMutableRawPointer(mutating: b).deallocate() }
        case .mapped: if let b = eagerBase { munmap(UnsafeMutableRawPointer(mutating: b), count) }
        case .window: if let m = windowMapping { munmap(m.address, m.length) }
        }
    }
}

/// A view of bytes inside a region, kept alive by holding the region.
public struct ByteSlice: Sendable {
    /// The region that owns the memory.
    public let region: ByteRegion
    /// Offset of the first byte inside the region.
    public let offset: Int
    /// Length in bytes.
    public let count: Int

    /// A slice `[offset, offset+count)` of `region`; the caller has checked the bounds.
    public init(region: ByteRegion, offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0 && offset <= region.count && count <= region.count - offset)
        self.region = region
        self.offset = offset
        self.count = count
    }

    /// The whole of `region`.
    public init(region: ByteRegion) { self.init(region: region, offset: 0, count: region.count) }

    /// Asks the kernel to map the slice's pages now, in one call, before a full read: far
    /// cheaper than one page fault per 4 KiB. Only for mapped files; a no-op elsewhere (and for
    /// a window not mapped yet).
    public func prefetch() {
        #if os(Linux)
        guard count >= 1 << 20, region.isFileMapping, let b = region.baseIfMapped else { return }
        let page = ByteRegion.pageSize
        let start = (Int(bitPattern: b) + offset) & ~(page - 1)
        let end = Int(bitPattern: b) + offset + count
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, 22 /* MADV_POPULATE_READ */)
        #endif
    }

    /// Drops the slice's pages of a mapped file from resident memory (a later read faults them in
    /// again from the file): after a tensor was read through the mapping, so reading a whole file
    /// that way does not leave it all resident. Does nothing for heap or anonymous memory (where
    /// MADV_DONTNEED would zero it) and for a window not mapped.
    public func releasePages() {
        #if os(Linux)
        guard region.isFileMapping, count > 0, let b = region.baseIfMapped else { return }
        let page = ByteRegion.pageSize
        let start = (Int(bitPattern: b) + offset) & ~(page - 1)
        let end = Int(bitPattern: b) + offset + count
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, 4 /* MADV_DONTNEED */)
        #endif
    }

    /// Copies bytes `[from, from + dst.count)` of the slice into `dst`: with `pread` from the
    /// file when the region is one (no page faults on a mapping, nothing mapped for a window),
    /// else with memcpy.
    /// - Throws: `TensorError.io` when the file gives fewer bytes and cannot be mapped either.
    public func copy(from: Int = 0, into dst: UnsafeMutableRawBufferPointer) throws {
        guard let d = dst.baseAddress, dst.count > 0 else { return }
        precondition(from >= 0 && dst.count <= count - from)
        let fd = region.fileDescriptor
        let fileStart = region.fileOffset + offset + from
        // large copies are split over the cores: each part faults and fills its own pages
        let total = dst.count
        let parts = total >= 16 << 20 ? ProcessInfo.processInfo.activeProcessorCount : 1
        let chunk = (total + parts - 1) / parts
        let base = UInt(bitPattern: d)
        let shortPointer = UnsafeMutablePointer<Int>.allocate(capacity: parts)
        shortPointer.initialize(repeating: -1, count: parts)
        defer { shortPointer.deallocate() }
        let shortAddress = UInt(bitPattern: shortPointer)
        DispatchQueue.concurrentPerform(iterations: parts) { i in
            let start = i * chunk
            let end = min(total, start + chunk)
            guard start < end, let out = UnsafeMutableRawPointer(bitPattern: base) else { return }
            var done = start
            if fd >= 0 {
                while done < end {
                    let n = pread(fd, out + done, end - done, off_t(fileStart + done))
                    if n <= 0 { break }
                    done += n
                }
            }
            if done < end, let short = UnsafeMutablePointer<Int>(bitPattern: shortAddress) { short[i] = done }
        }
        let short = shortPointer
        // what pread could not give (the file shrank underneath) is read through the mapping,
        // where a whole-file map faults and the SIGBUS handler names the file
        for i in 0 ..< parts where short[i] >= 0 {
            let done = short[i]
            let end = min(total, i * chunk + chunk)
            guard let b = try region.mapped() else {
                throw TensorError.io(path: region.filePath ?? "<memory>", message: "the file changed while ckpt was reading it: no bytes at offset \(fileStart + done)")
            }
            memcpy(d + done, b + offset + from + done, end - done)
        }
    }

    /// Calls `body` with bytes `[from, from + length)` of the slice in consecutive chunks of at
    /// most `chunk` bytes (a multiple of `elementSize`), read into one reused buffer.
    /// - Throws: `TensorError.io` from the reads, what `body` throws.
    public func forEachChunk(from: Int = 0, length: Int? = nil, chunk: Int, elementSize: Int = 1,
                             _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let total = length ?? (count - from)
        let step = max(elementSize, chunk / elementSize * elementSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(step, max(total, 1)), alignment: 64)
        defer { buffer.deallocate() }
        var o = 0
        while o < total {
            let n = min(step, total - o)
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0 ..< n])
            try copy(from: from + o, into: part)
            try body(UnsafeRawBufferPointer(part))
            o += n
        }
    }

    /// Calls `body` with the bytes, the region kept alive meanwhile (a window is mapped first).
    /// - Throws: `TensorError.io` when a window cannot be mapped; what `body` throws.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let all = try mappedBytes()
        return try withExtendedLifetime(region) { try body(all) }
    }

    /// The bytes of the slice, mapping a window first.
    /// - Throws: `TensorError.io` naming the file when a window cannot be mapped.
    public func mappedBytes() throws -> UnsafeRawBufferPointer {
        guard count > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        guard let b = try region.mapped() else {
            throw TensorError.io(path: region.filePath ?? "<memory>", message: "region of \(count) bytes has no memory")
        }
        return UnsafeRawBufferPointer(start: b + offset, count: count)
    }

    /// The bytes of the slice (empty if a window cannot be mapped: use `mappedBytes()` where
    /// that must be an error).
    public var bytes: UnsafeRawBufferPointer {
        guard let b = region.base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: b + offset, count: count)
    }
}

/// Byte order of the raw bytes of a storage.
public enum ByteOrder: String, Sendable, Codable {
    case little, big
}

/// Loads the records of one file by index, for every storage of that file: one object per file
/// where a loader closure per storage cost its captured context (a state dict of 300,000
/// tensors held 300,000 of them).
public final class RecordLoader: @unchecked Sendable {
    private let load: @Sendable (Int) throws -> ByteSlice

    /// A loader whose `load(i)` returns the bytes of record `i`.
    public init(_ load: @escaping @Sendable (Int) throws -> ByteSlice) { self.load = load }

    /// The bytes of record `index`.
    /// - Throws: whatever the file's reader throws for that record.
    public func record(_ index: Int) throws -> ByteSlice { try load(index) }
}

/// One storage of a checkpoint: a flat run of bytes shared by every tensor that views it.
///
/// Its bytes are loaded lazily the first time a tensor is read, then kept. Two tensors that name
/// the same storage key in a file hold the same `Storage` object.
/// PyTorch counterpart: `torch.UntypedStorage` with the dtype of its typed-storage class.
public final class Storage: @unchecked Sendable {
    /// The storage key in the file (`"0"`, `"94252189053760"`), used to name records.
    public let key: String
    /// Element type the file declared for the storage (uint8 for untyped storages).
    public let dtype: DType
    /// Byte order of the raw bytes.
    public let byteOrder: ByteOrder
    /// Size in bytes, as declared and checked against the record.
    public let byteCount: Int
    /// Device the file said the storage lived on (`cpu`, `cuda:0`); ckpt always reads to memory.
    public let location: String

    /// Where the bytes come from: 17 bytes in the storage (the rarer cases boxed), where a
    /// closure and its captured context cost 16 more and an allocation of their own.
    private enum Origin {
        /// Bytes in memory from the start.
        indirect case slice(ByteSlice)
        /// A loader of this storage's bytes; with a streamer, bytes `[from, from + length)` can
        /// also be produced chunk by chunk without loading the whole storage (a cast computed as
        /// it is read).
        indirect case loader(@Sendable () throws -> ByteSlice, ChunkStreamer?)
        /// Record `index` of a file's shared loader.
        case record(RecordLoader, Int)
    }
    private let origin: Origin
    /// The bytes once loaded; guarded by `Storage.lock(for:)`.
    private var cached: ByteSlice?

    /// Produces bytes `[from, from + length)` of a storage in chunks of at most `chunk` bytes
    /// (whole elements), calling the last argument with each.
    public typealias ChunkStreamer = @Sendable (_ from: Int, _ length: Int, _ chunk: Int,
                                                _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

    /// A storage whose bytes `loader` produces on first use; `loader` must return exactly `byteCount` bytes.
    /// `streamer`, when given, produces the same bytes chunk by chunk for bounded-memory reads.
    public convenience init(key: String, dtype: DType, byteCount: Int, byteOrder: ByteOrder = .little,
                            location: String = "cpu", streamer: ChunkStreamer? = nil,
                            loader: @escaping @Sendable () throws -> ByteSlice) {
        self.init(key: key, dtype: dtype, byteCount: byteCount, byteOrder: byteOrder, location: location, origin: .loader(loader, streamer))
    }

    /// A storage whose bytes are record `index` of `records` (the file's one loader), loaded on
    /// first use; the record must hold exactly `byteCount` bytes.
    public convenience init(key: String, dtype: DType, byteCount: Int, byteOrder: ByteOrder = .little,
                            location: String = "cpu", records: RecordLoader, index: Int) {
        self.init(key: key, dtype: dtype, byteCount: byteCount, byteOrder: byteOrder, location: location, origin: .record(records, index))
    }

    private init(key: String, dtype: DType, byteCount: Int, byteOrder: ByteOrder, location: String, origin: Origin) {
        self.key = key
        self.dtype = dtype
        self.byteCount = byteCount
        self.byteOrder = byteOrder
        self.location = location
        self.origin = origin
    }

    /// True when the bytes are computed as they are read (a cast): reading them chunk by chunk
    /// with `forEachLittleEndianChunk` never holds the whole storage.
    public var isStreamed: Bool { streamer != nil }

    private var streamer: ChunkStreamer? {
        if case let .loader(_, s) = origin { return s }
        return nil
    }

    /// A storage over bytes already in memory.
    public convenience init(key: String, dtype: DType, slice: ByteSlice, byteOrder: ByteOrder = .little) {
        self.init(key: key, dtype: dtype, byteCount: slice.count, byteOrder: byteOrder, location: "cpu", origin: .slice(slice))
    }

    /// A little-endian storage holding a copy of `bytes`.
    public convenience init(key: String, dtype: DType, bytes: [UInt8]) {
        let region = ByteRegion(bytes)
        self.init(key: key, dtype: dtype, slice: ByteSlice(region: region))
    }

    /// Number of elements of `dtype` the storage holds.
    public var elementCount: Int { byteCount / dtype.itemSize }

    /// Locks shared by all storages, picked by address: a lock of its own cost each storage
    /// 80 bytes (24 MB for 300,000 tensors). A lock guards only `cached` and is never held while
    /// bytes load, so a loader may read other storages.
    private static let locks: [NSLock] = (0 ..< 64).map { _ in NSLock() }

    private var lock: NSLock {
        let address = UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())
        return Storage.locks[Int((address >> 4) & 63)]
    }

    /// True once the bytes have been loaded.
    public var isLoaded: Bool {
        if case .slice = origin { return true }
        let l = lock
        l.lock(); defer { l.unlock() }
        return cached != nil
    }

    /// The raw bytes, loading them on first use. Two threads that ask at once may both load;
    /// both get the first slice stored.
    /// - Throws: whatever the loader throws (a format error naming the record), or
    ///   `TensorError.storageSize` when the loader returned the wrong number of bytes.
    public func slice() throws -> ByteSlice {
        let s: ByteSlice
        switch origin {
        case let .slice(b):
            return b
        case let .loader(load, _):
            if let c = loadedSlice { return c }
            s = try load()
        case let .record(records, index):
            if let c = loadedSlice { return c }
            s = try records.record(index)
        }
        guard s.count == byteCount else {
            throw TensorError.storageSize(key: key, expected: byteCount, got: s.count)
        }
        let l = lock
        l.lock(); defer { l.unlock() }
        if let c = cached { return c }
        cached = s
        return s
    }

    private var loadedSlice: ByteSlice? {
        let l = lock
        l.lock(); defer { l.unlock() }
        return cached
    }

    /// Drops loaded bytes so memory can be returned (the next read loads again).
    public func evict() {
        let l = lock
        l.lock(); defer { l.unlock() }
        cached = nil
    }
}

extension Storage {
    /// Calls `body` with the storage's bytes in little-endian order, in chunks of at most
    /// `chunk` bytes; big-endian storages are swapped chunk by chunk, so memory stays bounded.
    /// - Throws: storage load errors, or what `body` throws.
    public func forEachLittleEndianChunk(chunk: Int = 1 << 24, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try forEachLittleEndianChunk(from: 0, length: byteCount, chunk: chunk, body)
    }

    /// As `forEachLittleEndianChunk(chunk:_:)`, over bytes `[from, from + length)` only (both
    /// multiples of the element size): a streamed storage (a cast) computes just that range, a
    /// storage over a file reads just that range with `pread`.
    /// - Throws: storage load errors, or what `body` throws.
    public func forEachLittleEndianChunk(from: Int, length: Int, chunk: Int = 1 << 24,
                                         _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(from >= 0 && length >= 0 && length <= byteCount - from)
        if let streamer, !isLoaded {
            if length > 0 { try streamer(from, length, max(chunk, dtype.itemSize), body) }
            return
        }
        let s = try slice()
        if s.region.fileDescriptor >= 0 {
            // read through a buffer: the mapping is never faulted, so resident memory stays at
            // one chunk however large the storage, and however many storages are written
            try s.forEachChunk(from: from, length: length, chunk: chunk, elementSize: dtype.itemSize) { buffer in
                if byteOrder == .big, let d = UnsafeMutableRawPointer(mutating: buffer.baseAddress) {
                    Tensor.swapBytes(d, count: buffer.count / dtype.itemSize, dtype: dtype)
                }
                try body(buffer)
            }
            return
        }
        try s.withBytes { whole in
            let all = UnsafeRawBufferPointer(rebasing: whole[from ..< from + length])
            if byteOrder == .little {
                if all.count > 0 { try body(all) }
                return
            }
            let unit = dtype.itemSize
            let step = max(unit, chunk / unit * unit)
            var buffer = [UInt8](repeating: 0, count: min(step, all.count))
            var o = 0
            while o < all.count {
                let n = min(step, all.count - o)
                try buffer.withUnsafeMutableBytes { b in
                    guard let d = b.baseAddress, let src = all.baseAddress else { return }
                    d.copyMemory(from: src + o, byteCount: n)
                    Tensor.swapBytes(d, count: n / unit, dtype: dtype)
                    try body(UnsafeRawBufferPointer(start: d, count: n))
                }
                o += n
            }
        }
    }
}

/// A fixed table of paths kept as C strings, readable from a signal handler without allocating:
/// the files this process has mapped (named when a truncated one faults) and the temporary files
/// it is writing (removed when a signal ends it).
public final class SignalSafePaths: @unchecked Sendable {
    private let capacity: Int
    private let table: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let lock = NSLock()
    private var next = 0

    /// A table of at most `capacity` paths; when full, the oldest is replaced.
    public init(capacity: Int) {
        self.capacity = capacity
        table = .allocate(capacity: capacity)
        table.initialize(repeating: nil, count: capacity)
    }

    /// Adds `path` (once).
    public func insert(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        for i in 0 ..< capacity { if let p = table[i], String(cString: p) == path { return } }
        let i = (0 ..< capacity).first { table[$0] == nil } ?? next % capacity
        if let old = table[i] { free(old) }
        table[i] = strdup(path)
        next += 1
    }

    /// Removes `path`.
    public func remove(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        for i in 0 ..< capacity {
            if let p = table[i], String(cString: p) == path {
                table[i] = nil
                free(p)
            }
        }
    }

    /// Calls `body` with each path's C string; takes no lock and allocates nothing (signal handlers).
    public func forEach(_ body: (UnsafePointer<CChar>) -> Void) {
        for i in 0 ..< capacity { if let p = table[i] { body(p) } }
    }

    /// Writes `prefix`, the paths joined by ", ", and `suffix` to `fd` with `write(2)` only.
    public func writeNames(to fd: Int32, prefix: StaticString, suffix: StaticString) {
        _ = write(fd, prefix.utf8Start, prefix.utf8CodeUnitCount)
        var first = true
        forEach { p in
            if !first { _ = write(fd, ", ", 2) }
            _ = write(fd, p, strlen(p))
            first = false
        }
        _ = write(fd, suffix.utf8Start, suffix.utf8CodeUnitCount)
    }
}

/// The files this process has mapped (`ByteRegion.map`), for the message a SIGBUS handler writes.
public let mappedFiles = SignalSafePaths(capacity: 16)
