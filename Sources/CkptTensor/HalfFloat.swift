internal import CkptAVX512
import Dispatch

/// Bit-exact conversions between float32 and the 16-bit float formats, rounding as torch's
/// `.half()` and `.bfloat16()` round (to nearest, ties to even).
public enum HalfFloat {
    /// float16 bits → Float (exact).
    @inlinable public static func float(fromHalfBits h: UInt16) -> Float {
        Float(Float16(bitPattern: h))
    }

    /// Float → float16 bits, round to nearest even (c10::Half).
    @inlinable public static func halfBits(from f: Float) -> UInt16 {
        Float16(f).bitPattern
    }

    /// bfloat16 bits → Float (exact: the high half of a float32).
    @inlinable public static func float(fromBFloat16Bits b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// Float → bfloat16 bits, round to nearest even; NaN becomes 0x7FC0 (c10::round_to_nearest_even).
    @inlinable public static func bfloat16Bits(from f: Float) -> UInt16 {
        if f.isNaN { return 0x7FC0 }
        let u = f.bitPattern
        let bias = ((u >> 16) & 1) &+ 0x7FFF
        return UInt16(truncatingIfNeeded: (u &+ bias) >> 16)
    }
}

extension Storage {
    /// A storage holding every element of this one converted to `target` (torch's `.half()`,
    /// `.bfloat16()`, `.float()` rounding). Read chunk by chunk (`forEachLittleEndianChunk`, as
    /// the writers read), it converts each chunk of the source as it goes and never holds the
    /// whole result; read whole (`slice()`), it converts everything into memory once.
    /// - Throws: `TensorError.unsupportedDType` unless both dtypes are float64/32/16 or bfloat16.
    public func cast(to target: DType) throws -> Storage {
        let castable: Set<DType> = [.float64, .float32, .float16, .bfloat16]
        guard castable.contains(dtype), castable.contains(target) else {
            throw TensorError.unsupportedDType(dtype, "cannot cast to \(target.rawValue)")
        }
        let source = self
        let count = elementCount
        let from = dtype, unitIn = dtype.itemSize, unitOut = target.itemSize
        // bytes [start, start + length) of the cast: elements start/unitOut ..< (start+length)/unitOut
        // of the source, converted one source chunk at a time into one reused buffer
        let streamer: ChunkStreamer = { start, length, chunk, body in
            precondition(start % unitOut == 0 && length % unitOut == 0)
            // at most 4 MiB of output per chunk: two buffers (source and cast) stay small
            let perChunk = max(1, min(chunk, 4 << 20) / unitOut)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(perChunk, length / unitOut) * unitOut, alignment: 64)
            defer { buffer.deallocate() }
            guard let d = buffer.baseAddress else { return }
            try source.forEachLittleEndianChunk(from: start / unitOut * unitIn, length: length / unitOut * unitIn,
                                                chunk: perChunk * unitIn) { src in
                // the source may hand back smaller pieces than asked; each is whole elements
                var done = 0
                while done < src.count {
                    let n = min(perChunk, (src.count - done) / unitIn)
                    HalfFloat.convert(UnsafeRawBufferPointer(rebasing: src[done ..< done + n * unitIn]), from: from, to: d, target, count: n)
                    try body(UnsafeRawBufferPointer(start: d, count: n * unitOut))
                    done += n * unitIn
                }
            }
        }
        return Storage(key: key, dtype: target, byteCount: count * unitOut, byteOrder: .little, location: location, streamer: streamer) {
            let region = try ByteRegion.allocate(count: count * unitOut) { dst in
                guard let d = dst.baseAddress else { return }
                var at = 0
                try source.forEachLittleEndianChunk(chunk: 1 << 20) { chunk in
                    let n = chunk.count / unitIn
                    HalfFloat.convert(chunk, from: from, to: d + at * unitOut, target, count: n)
                    at += n
                }
            }
            return ByteSlice(region: region)
        }
    }
}

extension HalfFloat {
    /// Converts `count` little-endian elements between float64/32/16 and bfloat16. float64 goes
    /// through float32 first, as c10::Half and c10::BFloat16 construct from float. Large buffers
    /// are split over both cores; float32 ↔ float16 runs on F16C's 16-lane conversions where the
    /// CPU has AVX-512, float32 ↔ bfloat16 in loops the compiler vectorises.
    static func convert(_ src: UnsafeRawBufferPointer, from s: DType, to dst: UnsafeMutableRawPointer, _ t: DType, count: Int) {
        guard let p = src.baseAddress, count > 0 else { return }
        let parts = count >= 1 << 16 ? 2 : 1
        let box = UncheckedPointers(src: p, dst: dst)
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lo = count * part / parts, hi = count * (part + 1) / parts
            convertRange(box.src + lo * s.itemSize, from: s, to: box.dst + lo * t.itemSize, t, count: hi - lo)
        }
    }

    /// Two raw pointers handed to the worker threads of `convert` (each writes its own range).
    private struct UncheckedPointers: @unchecked Sendable {
        let src: UnsafeRawPointer
        let dst: UnsafeMutableRawPointer
    }

    private static func convertRange(_ p: UnsafeRawPointer, from s: DType, to dst: UnsafeMutableRawPointer, _ t: DType, count: Int) {
        switch (s, t) {
        case (.float32, .float16) where CPUFlags.hasAVX512:
            CastKernels.float32ToFloat16(p, dst, count: count)
            return
        case (.float16, .float32) where CPUFlags.hasAVX512:
            CastKernels.float16ToFloat32(p, dst, count: count)
            return
        case (.float32, .bfloat16):
            // typed, branch-free loops the compiler vectorises
            let u = p.assumingMemoryBound(to: UInt32.self), b = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0 ..< count {
                let x = u[i]
                let rounded = UInt16(truncatingIfNeeded: (x &+ (((x &>> 16) & 1) &+ 0x7FFF)) &>> 16)
                b[i] = (x & 0x7FFF_FFFF) > 0x7F80_0000 ? 0x7FC0 : rounded
            }
            return
        case (.bfloat16, .float32):
            let b = p.assumingMemoryBound(to: UInt16.self), u = dst.assumingMemoryBound(to: UInt32.self)
            for i in 0 ..< count { u[i] = UInt32(b[i]) &<< 16 }
            return
        default:
            convertScalar(p, from: s, to: dst, t, count: count)
        }
    }

    /// One element at a time: the reference every fast path must equal.
    static func convertScalar(_ p: UnsafeRawPointer, from s: DType, to dst: UnsafeMutableRawPointer, _ t: DType, count: Int) {
        for i in 0 ..< count {
            if s == .float64 && t == .float64 {
                dst.storeBytes(of: p.loadUnaligned(fromByteOffset: i * 8, as: Double.self), toByteOffset: i * 8, as: Double.self)
                continue
            }
            let f: Float
            var d: Double?
            switch s {
            case .float64:
                let v = p.loadUnaligned(fromByteOffset: i * 8, as: Double.self)
                d = v
                f = Float(v)
            case .float32: f = p.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
            case .float16: f = float(fromHalfBits: p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
            default: f = float(fromBFloat16Bits: p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
            }
            switch t {
            case .float64: dst.storeBytes(of: d ?? Double(f), toByteOffset: i * 8, as: Double.self)
            case .float32: dst.storeBytes(of: f, toByteOffset: i * 4, as: Float.self)
            case .float16: dst.storeBytes(of: halfBits(from: f), toByteOffset: i * 2, as: UInt16.self)
            default: dst.storeBytes(of: bfloat16Bits(from: f), toByteOffset: i * 2, as: UInt16.self)
            }
        }
    }
}
