#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Reading a tensor's elements: gather the strided view into contiguous little-endian bytes,
// applying byte order and torch's lazy conjugate/negate bits.

extension Tensor {
    /// Calls `body` with the tensor's elements as contiguous little-endian bytes: in place when
    /// the view is plain contiguous (zero-copy over the mapping), else through a gathered copy.
    /// - Throws: storage load errors, `TensorError.tooLarge` for runaway expanded views.
    public func withContiguousBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let slice = try storage.slice()
        if isPlainContiguous {
            let start = storageOffset * dtype.itemSize
            let all = try slice.mappedBytes()
            if byteCount >= 1 << 20 {
                ByteSlice(region: slice.region, offset: slice.offset + start, count: byteCount).prefetch()
            }
            let view = UnsafeRawBufferPointer(rebasing: all[start ..< start + byteCount])
            return try withExtendedLifetime(slice) { try body(view) }
        }
        let region = try materialize(slice: slice)
        return try withExtendedLifetime(region) { try body(region.bytes) }
    }

    /// The elements as contiguous little-endian bytes, in a region of their own.
    /// - Throws: storage load errors, `TensorError.tooLarge` for runaway expanded views.
    public func contiguousRegion() throws -> ByteSlice {
        let slice = try storage.slice()
        if isPlainContiguous {
            _ = try slice.mappedBytes()
            return ByteSlice(region: slice.region, offset: slice.offset + storageOffset * dtype.itemSize, count: byteCount)
        }
        return ByteSlice(region: try materialize(slice: slice))
    }

    /// Copies the elements, contiguous and little-endian, into `dst` (exactly `byteCount` bytes):
    /// plain contiguous views are read straight from the file, others gathered.
    /// - Throws: storage load errors, `TensorError.tooLarge` for runaway expanded views.
    public func copyContiguousBytes(into dst: UnsafeMutableRawBufferPointer) throws {
        precondition(dst.count == byteCount)
        if isPlainContiguous {
            let slice = try storage.slice()
            try slice.copy(from: storageOffset * dtype.itemSize, into: dst)
            return
        }
        try withContiguousBytes { src in
            if let d = dst.baseAddress, let s = src.baseAddress { memcpy(d, s, src.count) }
        }
    }

    /// Calls `body` with the elements as contiguous little-endian bytes in consecutive chunks
    /// of at most `chunk` bytes when the view is plain contiguous over a mapped file or a
    /// streamed storage (a cast): resident memory stays at one chunk. Else once with the whole
    /// gathered tensor.
    /// - Throws: storage load errors, what `body` throws.
    public func forEachContiguousChunk(chunk: Int = 1 << 24, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        if isPlainContiguous, storage.isStreamed, !storage.isLoaded {
            if byteCount > 0 {
                try storage.forEachLittleEndianChunk(from: storageOffset * dtype.itemSize, length: byteCount, chunk: chunk, body)
            }
            return
        }
        if isPlainContiguous {
            let slice = try storage.slice()
            if slice.region.fileDescriptor >= 0 {
                try slice.forEachChunk(from: storageOffset * dtype.itemSize, length: byteCount, chunk: chunk,
                                       elementSize: dtype.itemSize, body)
                return
            }
        }
        try withContiguousBytes(body)
    }

    /// The elements as contiguous little-endian bytes (`t.contiguous().numpy().tobytes()`).
    public func contiguousBytes() throws -> [UInt8] {
        try withContiguousBytes { Array($0) }
    }

    private func materialize(slice: ByteSlice) throws -> ByteRegion {
        try checkMaterializable()
        let size = dtype.itemSize
        let src = try slice.mappedBytes()
        return ByteRegion.allocate(count: byteCount) { dst in
            guard let d = dst.baseAddress, let s = src.baseAddress else { return }
            gather(from: s, to: d, itemSize: size)
            // torch swaps a big-endian storage by the storage's dtype (untyped storages as bytes)
            if storage.byteOrder == .big { Tensor.swapBytes(d, count: byteCount / storage.dtype.itemSize, dtype: storage.dtype) }
            if isNegated { Tensor.negate(d, count: elementCount, dtype: dtype) }
            if isConjugated { Tensor.conjugate(d, count: elementCount, dtype: dtype) }
        }
    }

    /// Copies the strided view from storage bytes `s` to contiguous `d`.
    private func gather(from s: UnsafeRawPointer, to d: UnsafeMutableRawPointer, itemSize: Int) {
        if elementCount == 0 { return }
        _ = gather(0 ..< elementCount, from: s, to: d, itemSize: itemSize)
    }

    /// Copies elements `range` (row-major order) of the strided view from storage bytes `s` to
    /// contiguous `d`; returns the lowest and highest storage element offsets it read.
    private func gather(_ range: Range<Int>, from s: UnsafeRawPointer, to d: UnsafeMutableRawPointer, itemSize: Int) -> (low: Int, high: Int) {
        let rank = shape.count
        if rank == 0 {
            memcpy(d, s + storageOffset * itemSize, itemSize)
            return (storageOffset, storageOffset)
        }
        let inner = shape[rank - 1]
        let innerStride = strides[rank - 1]
        // the multi-index of the range's first element (every size is > 0: the range is not empty)
        var index = [Int](repeating: 0, count: rank)
        var rest = range.lowerBound
        for k in stride(from: rank - 1, through: 0, by: -1) {
            index[k] = rest % shape[k]
            rest /= shape[k]
        }
        var low = Int.max, high = Int.min
        var left = range.count
        var out = d
        while left > 0 {
            var off = storageOffset
            for k in 0 ..< rank - 1 { off += index[k] * strides[k] }
            let first = index[rank - 1]
            let n = min(inner - first, left)
            off += first * innerStride
            low = min(low, off)
            high = max(high, off + (n - 1) * innerStride)
            let base = s + off * itemSize
            if innerStride == 1 {
                memcpy(out, base, n * itemSize)
            } else {
                switch itemSize {
                case 4:
                    for j in 0 ..< n {
                        out.storeBytes(of: (base + j * innerStride * 4).loadUnaligned(as: UInt32.self), toByteOffset: j * 4, as: UInt32.self)
                    }
                case 2:
                    for j in 0 ..< n {
                        out.storeBytes(of: (base + j * innerStride * 2).loadUnaligned(as: UInt16.self), toByteOffset: j * 2, as: UInt16.self)
                    }
                default:
                    for j in 0 ..< n { memcpy(out + j * itemSize, base + j * innerStride * itemSize, itemSize) }
                }
            }
            out += n * itemSize
            left -= n
            // next row: advance the multi-index over the outer dimensions
            index[rank - 1] = 0
            var k = rank - 2
            while k >= 0 {
                index[k] += 1
                if index[k] < shape[k] { break }
                index[k] = 0
                k -= 1
            }
        }
        return (low, high)
    }

    /// Elements per chunk of `readElements` must start at a multiple of this, so a big-endian
    /// storage of a wider dtype than the view swaps the same byte groups it swaps whole.
    public static let elementChunkAlignment = 16

    /// Copies elements `range` (row-major, as `contiguous()` orders them) into `dst` as
    /// little-endian bytes (`range.count × itemSize` bytes), reading only those elements:
    /// plain contiguous views with `pread` from a mapped file (the mapping is never faulted) or
    /// from a streamed cast, others gathered from the storage, whose mapped pages are dropped
    /// again afterwards (file mappings only, never heap memory). `range.lowerBound` is a
    /// multiple of `elementChunkAlignment` unless the range ends at `elementCount`.
    /// - Throws: storage load errors.
    public func readElements(_ range: Range<Int>, into dst: UnsafeMutableRawBufferPointer) throws {
        let size = dtype.itemSize
        precondition(range.lowerBound >= 0 && range.upperBound <= elementCount && dst.count == range.count * size)
        if range.isEmpty { return }
        if isPlainContiguous {
            let from = (storageOffset + range.lowerBound) * size
            if storage.isStreamed, !storage.isLoaded {
                var at = 0
                try storage.forEachLittleEndianChunk(from: from, length: dst.count, chunk: 1 << 20) { part in
                    if let d = dst.baseAddress, let p = part.baseAddress { memcpy(d + at, p, part.count) }
                    at += part.count
                }
                return
            }
            try storage.slice().copy(from: from, into: dst)
            return
        }
        let slice = try storage.slice()
        guard let d = dst.baseAddress else { return }
        let touched: (low: Int, high: Int) = try slice.withBytes { src in
            guard let s = src.baseAddress else { return (0, -1) }
            return gather(range, from: s, to: d, itemSize: size)
        }
        if storage.byteOrder == .big { Tensor.swapBytes(d, count: dst.count / storage.dtype.itemSize, dtype: storage.dtype) }
        if isNegated { Tensor.negate(d, count: range.count, dtype: dtype) }
        if isConjugated { Tensor.conjugate(d, count: range.count, dtype: dtype) }
        if touched.low <= touched.high {
            ByteSlice(region: slice.region, offset: slice.offset + touched.low * size, count: (touched.high - touched.low + 1) * size).releasePages()
        }
    }

    static func swapBytes(_ p: UnsafeMutableRawPointer, count: Int, dtype: DType) {
        // complex types swap each real component separately
        let unit = dtype.isComplex ? dtype.itemSize / 2 : dtype.itemSize
        if unit == 1 { return }
        let units = count * dtype.itemSize / unit
        let b = p.assumingMemoryBound(to: UInt8.self)
        for u in 0 ..< units {
            var i = u * unit, j = u * unit + unit - 1
            while i < j { let t = b[i]; b[i] = b[j]; b[j] = t; i += 1; j -= 1 }
        }
    }

    static func negate(_ p: UnsafeMutableRawPointer, count: Int, dtype: DType) {
        switch dtype {
        case .float32, .complex64:
            let n = dtype == .complex64 ? count * 2 : count
            let q = p.assumingMemoryBound(to: UInt32.self)
            for i in 0 ..< n { q[i] ^= 0x8000_0000 }
        case .float64, .complex128:
            let n = dtype == .complex128 ? count * 2 : count
            let q = p.assumingMemoryBound(to: UInt64.self)
            for i in 0 ..< n { q[i] ^= 0x8000_0000_0000_0000 }
        case .float16, .bfloat16:
            let q = p.assumingMemoryBound(to: UInt16.self)
            for i in 0 ..< count { q[i] ^= 0x8000 }
        case .int64:
            let q = p.assumingMemoryBound(to: Int64.self)
            for i in 0 ..< count { q[i] = 0 &- q[i] }
        case .int32:
            let q = p.assumingMemoryBound(to: Int32.self)
            for i in 0 ..< count { q[i] = 0 &- q[i] }
        case .int16:
            let q = p.assumingMemoryBound(to: Int16.self)
            for i in 0 ..< count { q[i] = 0 &- q[i] }
        case .int8:
            let q = p.assumingMemoryBound(to: Int8.self)
            for i in 0 ..< count { q[i] = 0 &- q[i] }
        default:
            break
        }
    }

    static func conjugate(_ p: UnsafeMutableRawPointer, count: Int, dtype: DType) {
        switch dtype {
        case .complex64:
            let q = p.assumingMemoryBound(to: UInt32.self)
            for i in 0 ..< count { q[2 * i + 1] ^= 0x8000_0000 }
        case .complex128:
            let q = p.assumingMemoryBound(to: UInt64.self)
            for i in 0 ..< count { q[2 * i + 1] ^= 0x8000_0000_0000_0000 }
        default:
            break
        }
    }

    /// The elements as `Double`s in row-major order; complex tensors give interleaved real and
    /// imaginary parts (2 values per element).
    /// - Throws: `TensorError.unsupportedDType` for float8 and complex32.
    public func doubles() throws -> [Double] {
        guard dtype.isNumericallyReadable else {
            throw TensorError.unsupportedDType(dtype, "cannot be read as numbers")
        }
        if dtype.isQuantized { return try dequantized() }
        return try withContiguousBytes { raw in
            let n = dtype.isComplex ? elementCount * 2 : elementCount
            var out = [Double](repeating: 0, count: n)
            out.withUnsafeMutableBufferPointer { o in ElementDecode.decode(raw, dtype: dtype, into: o) }
            return out
        }
    }

    /// A quantized tensor's real values in row-major order (`t.dequantize()`, rounded as torch
    /// rounds them: see `Dequantizer`).
    /// - Throws: `TensorError.unsupportedDType` without quantization parameters or for packed types.
    private func dequantized() throws -> [Double] {
        let d = try Dequantizer(self)
        return try withContiguousBytes { raw in
            var out = [Double](repeating: 0, count: elementCount)
            out.withUnsafeMutableBufferPointer { d.apply(raw, from: 0, into: $0) }
            return out
        }
    }

    /// The elements as `Float`s in row-major order (the conversion `t.float()` makes).
    /// - Throws: `TensorError.unsupportedDType` for complex, float8 and complex32 tensors.
    public func floats() throws -> [Float] {
        guard dtype.isNumericallyReadable, !dtype.isComplex else {
            throw TensorError.unsupportedDType(dtype, "cannot be read as float32")
        }
        if dtype == .float32 {
            // straight from the file when mapped: the mapping is not faulted in (resident memory
            // holds the copy only)
            var out = [Float](repeating: 0, count: elementCount)
            try out.withUnsafeMutableBytes { try copyContiguousBytes(into: $0) }
            return out
        }
        return try doubles().map { Float($0) }
    }
}

/// Turns a quantized tensor's stored integers into its real values, `(q - zero_point) * scale`
/// with each element's channel parameters, rounded as torch's `dequantize()` rounds them: per
/// tensor and with float qparams the arithmetic is float32, per channel affine it is double (the
/// quantizer keeps double scales); each result is a float32. Works on any run of consecutive
/// elements, so callers can go chunk by chunk.
public struct Dequantizer {
    let plain: DType
    let scales: [Double], zeroPoints: [Double]
    let channels: Int, inner: Int
    /// How torch rounds: float32 arithmetic (per tensor), double (per channel affine), float32
    /// with a floating zero point (float qparams).
    enum Arithmetic { case perTensor, perChannelDouble, floatQParams }
    let arithmetic: Arithmetic

    /// The parameters of `tensor`.
    /// - Throws: `TensorError.unsupportedDType` for a tensor that is not quantized, has no
    ///   parameters, or packs several elements per byte.
    public init(_ tensor: Tensor) throws {
        guard let q = tensor.quantization, let plain = tensor.dtype.quantizedStorageType else {
            throw TensorError.unsupportedDType(tensor.dtype, "cannot be read as numbers without its quantization parameters")
        }
        self.plain = plain
        (scales, zeroPoints) = try q.parameters()
        if case let .perChannel(_, _, axis) = q {
            channels = tensor.shape[axis]
            inner = max(1, tensor.shape[(axis + 1)...].reduce(1, *))
        } else {
            channels = 1
            inner = 1
        }
        switch q.schemeName {
        case "per_channel_affine": arithmetic = .perChannelDouble
        case "per_channel_affine_float_qparams": arithmetic = .floatQParams
        default: arithmetic = .perTensor
        }
    }

    /// Dequantizes `out.count` contiguous stored integers (`raw`, little-endian), which are the
    /// tensor's elements `start ..< start + out.count` in row-major order.
    public func apply(_ raw: UnsafeRawBufferPointer, from start: Int, into out: UnsafeMutableBufferPointer<Double>) {
        ElementDecode.decode(raw, dtype: plain, into: out)
        for i in 0 ..< out.count {
            let c = channels == 1 ? 0 : ((start + i) / inner) % channels
            switch arithmetic {
            case .perChannelDouble:
                out[i] = Double(Float((out[i] - zeroPoints[c]) * scales[c]))
            case .floatQParams:
                out[i] = Double((Float(out[i]) - Float(zeroPoints[c])) * Float(scales[c]))
            case .perTensor:
                // the integer zero point subtracted exactly, then float32 times the float32 scale
                out[i] = Double(Float(out[i] - zeroPoints[c]) * Float(scales[c]))
            }
        }
    }
}

/// Decoding of little-endian element bytes into doubles.
public enum ElementDecode {
    /// Decodes `raw` (contiguous little-endian elements of `dtype`) into `out`.
    public static func decode(_ raw: UnsafeRawBufferPointer, dtype: DType, into out: UnsafeMutableBufferPointer<Double>) {
        guard let b = raw.baseAddress else { return }
        let n = out.count
        switch dtype {
        case .float32, .complex64:
            for i in 0 ..< n { out[i] = Double(b.loadUnaligned(fromByteOffset: i * 4, as: Float.self)) }
        case .float64, .complex128:
            for i in 0 ..< n { out[i] = b.loadUnaligned(fromByteOffset: i * 8, as: Double.self) }
        case .float16:
            for i in 0 ..< n { out[i] = Double(HalfFloat.float(fromHalfBits: b.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
        case .bfloat16:
            for i in 0 ..< n { out[i] = Double(HalfFloat.float(fromBFloat16Bits: b.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
        case .int64:
            for i in 0 ..< n { out[i] = Double(b.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)) }
        case .int32:
            for i in 0 ..< n { out[i] = Double(b.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
        case .int16:
            for i in 0 ..< n { out[i] = Double(b.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)) }
        case .int8:
            for i in 0 ..< n { out[i] = Double(b.load(fromByteOffset: i, as: Int8.self)) }
        case .uint8:
            for i in 0 ..< n { out[i] = Double(b.load(fromByteOffset: i, as: UInt8.self)) }
        case .bool:
            for i in 0 ..< n { out[i] = b.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0 }
        case .uint16:
            for i in 0 ..< n { out[i] = Double(b.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) }
        case .uint32:
            for i in 0 ..< n { out[i] = Double(b.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }
        case .uint64:
            for i in 0 ..< n { out[i] = Double(b.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
        default:
            for i in 0 ..< n { out[i] = .nan }
        }
    }
}
