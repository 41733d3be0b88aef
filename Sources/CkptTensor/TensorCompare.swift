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

    /// Compares `a` and `b`, which must have the same shape; different dtypes (float32 against
    /// its float16 cast, say) compare by value and are never `identical`.
    /// - Throws: `TensorError.badView` when the shapes differ or one side is complex and the other
    ///   is not; storage load errors.
    public static func compare(_ a: Tensor, _ b: Tensor, tolerance: (rtol: Double, atol: Double)? = nil) throws -> TensorDifference {
        guard a.shape == b.shape else { throw TensorError.badView("shapes \(a.shape) and \(b.shape) differ") }
        guard a.dtype.isComplex == b.dtype.isComplex else { throw TensorError.badView("dtypes \(a.dtype.rawValue) and \(b.dtype.rawValue) differ") }
        return try a.withContiguousBytes { ra in
            try b.withContiguousBytes { rb in
                var r = TensorDifference(identical: true, maxAbsolute: 0, nanMismatches: 0, differingElements: 0)
                if a.dtype == b.dtype, ra.elementsEqual(rb) { return r }
                r.identical = false
                guard a.dtype.isNumericallyReadable, b.dtype.isNumericallyReadable else {
                    r.maxAbsolute = .nan
                    r.differingElements = a.elementCount
                    return r
                }
                let per = a.dtype.isComplex ? 2 : 1
                func real(_ d: DType) -> DType { d == .complex64 ? .float32 : (d == .complex128 ? .float64 : d) }
                let decodeA = real(a.dtype), decodeB = real(b.dtype)
                let unitA = a.dtype.itemSize / per, unitB = b.dtype.itemSize / per
                let total = a.elementCount * per
                let chunk = 1 << 16
                var xa = [Double](repeating: 0, count: chunk), xb = xa
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
                            let d = u == v ? 0 : abs(u - v)
                            if d > r.maxAbsolute || d.isNaN { r.maxAbsolute = d }
                            // torch.allclose: |a - b| <= atol + rtol * |b| (infinities must match exactly)
                            if let t = tolerance, !(d <= t.atol + t.rtol * abs(v)) || u.isInfinite || v.isInfinite { r.outsideTolerance += 1 }
                        }
                    }
                    start += c
                }
                return r
            }
        }
    }
}
