#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation

/// A block of read-only bytes that stays valid while the object lives: an mmap of a whole file
/// or a heap allocation. Storages point into one of these.
public final class ByteRegion: @unchecked Sendable {
    /// First byte of the region (nil only when the region is empty).
    public let base: UnsafeRawPointer?
    /// Length in bytes.
    public let count: Int
    private let ownership: Ownership
    /// An open descriptor of the mapped file, kept so bulk reads can use `pread` instead of
    /// faulting the mapping page by page.
    public private(set) var fileDescriptor: Int32 = -1

    /// Who frees the memory when the region dies.
    public enum Ownership: Sendable {
        /// Nobody: static or borrowed memory that outlives the region.
        case borrowed
        /// `UnsafeMutableRawPointer.allocate`d memory.
        case heap
        /// An `mmap` of `count` bytes.
        case mapped
    }

    /// Wraps memory that `ownership` says how to free.
    public init(base: UnsafeRawPointer?, count: Int, ownership: Ownership) {
        self.base = base
        self.count = count
        self.ownership = ownership
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
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw TensorError.io(path: path, message: String(cString: strerror(errno))) }
        var keep = false
        defer { if !keep { close(fd) } }
        var st = stat()
        if fstat(fd, &st) != 0 { throw TensorError.io(path: path, message: String(cString: strerror(errno))) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw TensorError.io(path: path, message: "is a directory") }
        let size = Int(st.st_size)
        if size == 0 { return ByteRegion(base: nil, count: 0, ownership: .borrowed) }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw TensorError.io(path: path, message: "mmap failed: " + String(cString: strerror(errno)))
        }
        let region = ByteRegion(base: UnsafeRawPointer(m), count: size, ownership: .mapped)
        region.fileDescriptor = fd
        keep = true
        mappedFiles.insert(path)
        return region
    }

    /// The region's bytes.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    deinit {
        if fileDescriptor >= 0 { close(fileDescriptor) }
        guard let b = base else { return }
        switch ownership {
        case .borrowed: break
        case .heap: UnsafeMutableRawPointer(mutating: b).deallocate()
        case .mapped: munmap(UnsafeMutableRawPointer(mutating: b), count)
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
    /// cheaper than one page fault per 4 KiB. Only for mapped files; a no-op elsewhere.
    public func prefetch() {
        #if os(Linux)
        guard count >= 1 << 20, let b = region.base else { return }
        let page = 4096
        let start = (Int(bitPattern: b) + offset) & ~(page - 1)
        let end = Int(bitPattern: b) + offset + count
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, 22 /* MADV_POPULATE_READ */)
        #endif
    }

    /// Drops the slice's pages of a mapped file from resident memory (a later read faults them in
    /// again from the file): after a tensor was read through the mapping, so reading a whole file
    /// that way does not leave it all resident. Does nothing for heap memory.
    public func releasePages() {
        #if os(Linux)
        guard region.fileDescriptor >= 0, count > 0, let b = region.base else { return }
        let page = 4096
        let start = (Int(bitPattern: b) + offset) & ~(page - 1)
        let end = Int(bitPattern: b) + offset + count
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, 4 /* MADV_DONTNEED */)
        #endif
    }

    /// Copies bytes `[from, from + dst.count)` of the slice into `dst`: with `pread` from the
    /// file when the region maps one (no page faults on the mapping), else with memcpy.
    public func copy(from: Int = 0, into dst: UnsafeMutableRawBufferPointer) {
        guard let d = dst.baseAddress, dst.count > 0 else { return }
        precondition(from >= 0 && dst.count <= count - from)
        let fd = region.fileDescriptor
        // large copies are split over the cores: each part faults and fills its own pages
        let total = dst.count
        let parts = total >= 16 << 20 ? ProcessInfo.processInfo.activeProcessorCount : 1
        let chunk = (total + parts - 1) / parts
        let base = UInt(bitPattern: d)
        DispatchQueue.concurrentPerform(iterations: parts) { i in
            let start = i * chunk
            let end = min(total, start + chunk)
            guard start < end, let out = UnsafeMutableRawPointer(bitPattern: base) else { return }
            var done = start
            if fd >= 0, total >= 1 << 16 {
                while done < end {
                    let n = pread(fd, out + done, end - done, off_t(offset + from + done))
                    if n <= 0 { break }
                    done += n
                }
            }
            if done < end, let b = region.base { memcpy(out + done, b + offset + from + done, end - done) }
        }
    }

    /// Calls `body` with bytes `[from, from + length)` of the slice in consecutive chunks of at
    /// most `chunk` bytes (a multiple of `elementSize`), read into one reused buffer.
    public func forEachChunk(from: Int = 0, length: Int? = nil, chunk: Int, elementSize: Int = 1,
                             _ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        let total = length ?? (count - from)
        let step = max(elementSize, chunk / elementSize * elementSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(step, max(total, 1)), alignment: 64)
        defer { buffer.deallocate() }
        var o = 0
        while o < total {
            let n = min(step, total - o)
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0 ..< n])
            copy(from: from + o, into: part)
            try body(UnsafeRawBufferPointer(part))
            o += n
        }
    }

    /// The bytes of the slice.
    public var bytes: UnsafeRawBufferPointer {
        guard let b = region.base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: b + offset, count: count)
    }
}

/// Byte order of the raw bytes of a storage.
public enum ByteOrder: String, Sendable, Codable {
    case little, big
}

/// One storage of a checkpoint: a flat run of bytes shared by every tensor that views it.
///
/// Its bytes are loaded lazily by `loader` the first time a tensor is read, then kept. Two
/// tensors that name the same storage key in a file hold the same `Storage` object.
/// PyTorch counterpart: `torch.UntypedStorage` with the dtype of its typed-storage class.
public final class Storage: @unchecked Sendable {
    /// The storage key in the file (`"0"`, `"94252189053760"`), used to name records.
    public let key: String
    /// Element type the file declared for the storage (uint8 for untyped storages).
    public let dtype: DType
    /// Size in bytes, as declared and checked against the record.
    public let byteCount: Int
    /// Byte order of the raw bytes.
    public let byteOrder: ByteOrder
    /// Device the file said the storage lived on (`cpu`, `cuda:0`); ckpt always reads to memory.
    public let location: String

    private let loader: @Sendable () throws -> ByteSlice
    private let lock = NSLock()
    private var cached: ByteSlice?

    /// A storage whose bytes `loader` produces on first use; `loader` must return exactly `byteCount` bytes.
    public init(key: String, dtype: DType, byteCount: Int, byteOrder: ByteOrder = .little,
                location: String = "cpu", loader: @escaping @Sendable () throws -> ByteSlice) {
        self.key = key
        self.dtype = dtype
        self.byteCount = byteCount
        self.byteOrder = byteOrder
        self.location = location
        self.loader = loader
    }

    /// A storage over bytes already in memory.
    public convenience init(key: String, dtype: DType, slice: ByteSlice, byteOrder: ByteOrder = .little) {
        self.init(key: key, dtype: dtype, byteCount: slice.count, byteOrder: byteOrder, loader: { slice })
    }

    /// A little-endian storage holding a copy of `bytes`.
    public convenience init(key: String, dtype: DType, bytes: [UInt8]) {
        let region = ByteRegion(bytes)
        self.init(key: key, dtype: dtype, slice: ByteSlice(region: region))
    }

    /// Number of elements of `dtype` the storage holds.
    public var elementCount: Int { byteCount / dtype.itemSize }

    /// True once the bytes have been loaded.
    public var isLoaded: Bool {
        lock.lock(); defer { lock.unlock() }
        return cached != nil
    }

    /// The raw bytes, loading them on first use.
    /// - Throws: whatever the loader throws (a format error naming the record), or
    ///   `TensorError.storageSize` when the loader returned the wrong number of bytes.
    public func slice() throws -> ByteSlice {
        lock.lock(); defer { lock.unlock() }
        if let c = cached { return c }
        let s = try loader()
        guard s.count == byteCount else {
            throw TensorError.storageSize(key: key, expected: byteCount, got: s.count)
        }
        cached = s
        return s
    }

    /// Drops loaded bytes so memory can be returned (the next read loads again).
    public func evict() {
        lock.lock(); defer { lock.unlock() }
        cached = nil
    }
}

extension Storage {
    /// Calls `body` with the storage's bytes in little-endian order, in chunks of at most
    /// `chunk` bytes; big-endian storages are swapped chunk by chunk, so memory stays bounded.
    /// - Throws: storage load errors, or what `body` throws.
    public func forEachLittleEndianChunk(chunk: Int = 1 << 24, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let s = try slice()
        if s.region.fileDescriptor >= 0, s.count >= 1 << 16 {
            // read through a buffer: the mapping is never faulted, so resident memory stays at
            // one chunk however large the storage, and however many storages are written
            try s.forEachChunk(chunk: chunk, elementSize: dtype.itemSize) { buffer in
                if byteOrder == .big, let d = UnsafeMutableRawPointer(mutating: buffer.baseAddress) {
                    Tensor.swapBytes(d, count: buffer.count / dtype.itemSize, dtype: dtype)
                }
                try body(buffer)
            }
            return
        }
        s.prefetch()
        try withExtendedLifetime(s) {
            let all = s.bytes
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
