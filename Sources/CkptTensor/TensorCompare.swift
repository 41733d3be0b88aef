#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element-wise comparison of two tensors of one shape, in bounded memory.
public struct TensorDifference: Sendable, Equatable {
    /// True when the contiguous bytes are identical (NaN payloads included).
    public var identical: Bool
    /// Largest |a − b| over elements where both are numbers (0 when identical); NaN in one but
    /// not the other counts in `nanMismatches` instead.
    public var maxAbsolute: Double
    /// Elements where exactly one side is NaN.
    public var nanMismatches: Int
    /// Elements that differ at all.
    public var differingElements: Int
    /// Elements outside `|a − b| ≤ atol + rtol·|b|` for the tolerance given to `compare` (0 without one).
    public var outsideTolerance: Int = 0

    /// Elements of each side read per chunk: memory holds two such chunks, however large the
    /// tensors (a multiple of `Tensor.elementChunkAlignment`).
    public static let chunkElements = 1 << 18

    /// Compares `a` and `b`, which must have the same shape; different dtypes (float32 against
    /// its float16 cast, say) compare by value and are never `identical`. Both are read chunk by
    /// chunk (`Tensor.readElements`), so memory stays at two chunks, not two whole tensors.
    /// - Throws: `TensorError.badView` when the shapes differ or one side is complex and the other
    ///   is not; `TensorError.tooLarge` for a runaway expanded view; storage load errors.
    public static func compare(_ a: Tensor, _ b: Tensor, tolerance: (rtol: Double, atol: Double)? = nil,
                               chunkElements: Int = TensorDifference.chunkElements) throws -> TensorDifference {
        guard a.shape == b.shape else { throw TensorError.badView("shapes \(a.shape) and \(b.shape) differ") }
        guard a.dtype.isComplex == b.dtype.isComplex else { throw TensorError.badView("dtypes \(a.dtype.rawValue) and \(b.dtype.rawValue) differ") }
        // what was refused when a tensor was compared whole is still refused
        try a.checkMaterializable()
        try b.checkMaterializable()
        let align = Tensor.elementChunkAlignment
        let step = max(align, chunkElements / align * align)
        let total = a.elementCount
        let sizeA = a.dtype.itemSize, sizeB = b.dtype.itemSize
        let bufferA = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(step, total) * sizeA), alignment: 64)
        let bufferB = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(step, total) * sizeB), alignment: 64)
        defer { bufferA.deallocate(); bufferB.deallocate() }
        let readable = a.dtype.isNumericallyReadable && b.dtype.isNumericallyReadable
        // quantized sides compare by real value, (q - zero_point) * scale; equal stored integers
        // under other parameters are other values
        let quantized = readable && (a.dtype.isQuantized || b.dtype.isQuantized)
        let dequantizers = (quantized && a.quantization != nil ? try Dequantizer(a) : nil,
                            quantized && b.quantization != nil ? try Dequantizer(b) : nil)
        let sameParameters = try Quantization.same(a.quantization, b.quantization)
        // different dtypes are never identical, even with no elements
        var r = TensorDifference(identical: a.dtype == b.dtype && sameParameters, maxAbsolute: 0, nanMismatches: 0, differingElements: 0)
        var start = 0
        while start < total {
            let c = min(step, total - start)
            let ra = UnsafeMutableRawBufferPointer(rebasing: bufferA[0 ..< c * sizeA])
            let rb = UnsafeMutableRawBufferPointer(rebasing: bufferB[0 ..< c * sizeB])
            try a.readElements(start ..< start + c, into: ra)
            try b.readElements(start ..< start + c, into: rb)
            start += c
            // equal bytes are equal values (or NaN on both sides): nothing to count in them
            if a.dtype == b.dtype, sameParameters, let pa = ra.baseAddress, let pb = rb.baseAddress, memcmp(pa, pb, c * sizeA) == 0 { continue }
            r.identical = false
            if quantized {
                // both sides as real values, then compared as float64
                let real = UnsafeMutableBufferPointer<Double>.allocate(capacity: 2 * c)
                defer { real.deallocate() }
                let ua = UnsafeMutableBufferPointer(rebasing: real[0 ..< c]), ub = UnsafeMutableBufferPointer(rebasing: real[c ..< 2 * c])
                if let d = dequantizers.0 { d.apply(UnsafeRawBufferPointer(ra), from: start - c, into: ua) } else { ElementDecode.decode(UnsafeRawBufferPointer(ra), dtype: a.dtype, into: ua) }
                if let d = dequantizers.1 { d.apply(UnsafeRawBufferPointer(rb), from: start - c, into: ub) } else { ElementDecode.decode(UnsafeRawBufferPointer(rb), dtype: b.dtype, into: ub) }
                accumulate(UnsafeRawBufferPointer(ua), .float64, UnsafeRawBufferPointer(ub), .float64, count: c, tolerance: tolerance, into: &r)
            } else if readable {
                accumulate(UnsafeRawBufferPointer(ra), a.dtype, UnsafeRawBufferPointer(rb), b.dtype, count: c, tolerance: tolerance, into: &r)
            }
        }
        if !r.identical && !readable {
            r.maxAbsolute = .nan
            r.differingElements = total
        }
        return r
    }

    /// Adds the differences of `count` elements of `ra` (dtype `da`) and `rb` (dtype `db`) to `r`.
    private static func accumulate(_ ra: UnsafeRawBufferPointer, _ da: DType, _ rb: UnsafeRawBufferPointer, _ db: DType, count: Int,
                                   tolerance: (rtol: Double, atol: Double)?, into r: inout TensorDifference) {
        let per = da.isComplex ? 2 : 1
        func real(_ d: DType) -> DType { d == .complex64 ? .float32 : (d == .complex128 ? .float64 : d) }
        let decodeA = real(da), decodeB = real(db)
        let unitA = da.itemSize / per, unitB = db.itemSize / per
        let total = count * per
        let chunk = 1 << 16
        var xa = [Double](repeating: 0, count: min(chunk, total)), xb = xa
        var start = 0
        while start < total {
            let c = min(chunk, total - start)
            let pa = UnsafeRawBufferPointer(rebasing: ra[start * unitA ..< (start + c) * unitA])
            let pb = UnsafeRawBufferPointer(rebasing: rb[start * unitB ..< (start + c) * unitB])
            xa.withUnsafeMutableBufferPointer { ElementDecode.decode(pa, dtype: decodeA, into: UnsafeMutableBufferPointer(rebasing: $0[0 ..< c])) }
            xb.withUnsafeMutableBufferPointer { ElementDecode.decode(pb, dtype: decodeB, into: UnsafeMutableBufferPointer(rebasing: $0[0 ..< c])) }
            for i in 0 ..< c {
                let u = xa[i], v = xb[i]
                if u.isNaN || v.isNaN {
                    if u.isNaN != v.isNaN { r.nanMismatches += 1; r.differingElements += 1; r.outsideTolerance += 1 }
                    continue
                }
                if u != v {
                    r.differingElements += 1
                    let d = abs(u - v)
                    if d > r.maxAbsolute || d.isNaN { r.maxAbsolute = d }
                    // torch.allclose: |a - b| <= atol + rtol * |b| (infinities must match exactly)
                    if let t = tolerance, !(d <= t.atol + t.rtol * abs(v)) || u.isInfinite || v.isInfinite { r.outsideTolerance += 1 }
                }
            }
            start += c
        }
    }
}
