#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CkptTensor

/// Byte ranges of storage records found after the pickles of a legacy or tar stream. Filled
/// once the stream has been walked, before any storage loader runs.
final class RecordIndex: @unchecked Sendable {
    var ranges: [ExactKey: (offset: Int, count: Int)] = [:]
}

/// Reads `dst.count` bytes at `offset` of `fd` with `pread`, retrying short reads; returns nil,
/// or what went wrong (an error, or the file ending early because it changed underneath).
func preadFully(_ fd: Int32, _ dst: UnsafeMutableRawBufferPointer, at offset: Int) -> String? {
    var done = 0
    while done < dst.count, let p = dst.baseAddress {
        let r = pread(fd, p + done, dst.count - done, off_t(offset + done))
        if r < 0, errno == EINTR { continue }
        if r < 0 { return String(cString: strerror(errno)) }
        if r == 0 { return "the file ends at \(offset + done), before the \(dst.count) bytes at \(offset) (it changed while ckpt was reading it)" }
        done += r
    }
    return nil
}

/// Runs one pickle that starts at `offset` of `bytes` and returns it with its end offset.
func runEmbeddedPickle(_ bytes: UnsafeRawBufferPointer, at offset: Int, file: String, member: String,
                       options: UnpickleOptions,
                       persistentLoad: Unpickler.PersistentLoad? = nil) throws -> (value: Value, end: Int, unpickler: Unpickler) {
    let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
    let u = Unpickler(bytes: rest, file: file, member: member, baseOffset: offset, options: options,
                      persistentLoad: persistentLoad)
    let v = try u.run()
    return (v, offset + u.endOffset, u)
}

/// A legacy or tar stream, read only where its structure is: pickles through a window that grows
/// until the pickle ends inside it, fixed-size fields with `pread`. A file larger than the
/// address space opens this way without being mapped whole, and reading the structure of a
/// mapped file never faults in the pages of the tensors between its pickles.
struct StreamBytes {
    /// The whole file (mapped, or a window not mapped yet).
    let region: ByteRegion
    /// The file name used in errors.
    let file: String
    /// First window a pickle is run in when the file is not mapped whole (grown ×4 while the
    /// pickle runs past its end).
    static let initialWindow = 1 << 20

    /// Runs the pickle at offset `at` of the part of the file `[start, start + length)` that
    /// `member` names (offsets in errors are relative to that part); `at` and the returned end
    /// are relative to `start` too.
    /// - Throws: `FormatError` from the pickle (a truncation only when the part itself ends), or
    ///   `.io` when the window cannot be mapped.
    func pickle(member: String, start: Int = 0, length: Int? = nil, at: Int, options: UnpickleOptions,
                persistentLoad: Unpickler.PersistentLoad? = nil) throws -> (value: Value, end: Int, unpickler: Unpickler) {
        let rest = (length ?? region.count - start) - at
        precondition(at >= 0 && rest >= 0 && start + at + rest <= region.count)
        var size = region.isMapped ? rest : min(rest, StreamBytes.initialWindow)
        while true {
            let window = region.part(offset: start + at, count: size)
            do {
                return try mapped(window, file: file, member: member) { raw in
                    let u = Unpickler(bytes: raw, file: file, member: member, baseOffset: at, options: options,
                                      persistentLoad: persistentLoad)
                    let v = try u.run()
                    return (v, at + u.endOffset, u)
                }
            } catch let e as FormatError where e.kind == .truncated && size < rest {
                // the window ended, not the stream: a pickle runs in order, so the larger window
                // reads the same opcodes again and goes further
                size = rest / 4 < size ? rest : size * 4
            }
        }
    }

    /// `count` bytes at `offset` of the file, read with `pread` (nothing is mapped or faulted).
    /// - Throws: `FormatError.io` naming `member` when the file gives fewer bytes.
    func read(_ count: Int, at offset: Int, member: String) throws -> [UInt8] {
        precondition(offset >= 0 && count >= 0 && count <= region.count - offset)
        var out = [UInt8](repeating: 0, count: count)
        let failure: String? = out.withUnsafeMutableBytes { dst in
            if region.fileDescriptor >= 0 { return preadFully(region.fileDescriptor, dst, at: region.fileOffset + offset) }
            if let d = dst.baseAddress, let b = region.base { d.copyMemory(from: b + offset, byteCount: count) }
            return nil
        }
        if let failure { throw FormatError(.io, file: file, member: member, offset: offset, failure) }
        return out
    }

    /// The little-endian integer of type `T` at `offset` of the file, read with `pread`.
    /// - Throws: as `read`.
    func integer<T: FixedWidthInteger>(_: T.Type, at offset: Int, member: String) throws -> T {
        try read(MemoryLayout<T>.size, at: offset, member: member).withUnsafeBytes { T(littleEndian: $0.loadUnaligned(as: T.self)) }
    }

    /// Bytes `[offset, offset + count)` of the file as a slice: a window of its own when the file
    /// is not mapped whole.
    func part(offset: Int, count: Int) -> ByteSlice { region.part(offset: offset, count: count) }
}
