/// Summary statistics of a tensor's values, as `t.min()`, `t.max()`, `t.mean()`, `t.std()` give
/// them (std with Bessel's correction, torch's default), plus NaN/Inf/zero counts.
public struct TensorStats: Sendable, Equatable {
    /// Smallest finite-or-infinite value (NaN ignored); nil when there is none.
    public var min: Double?
    /// Largest value (NaN ignored); nil when there is none.
    public var max: Double?
    /// Mean over non-NaN values.
    public var mean: Double?
    /// Sample standard deviation over non-NaN values (n−1 in the denominator).
    public var std: Double?
    /// Number of NaN values.
    public var nanCount: Int
    /// Number of ±infinite values.
    public var infCount: Int
    /// Number of values equal to zero.
    public var zeroCount: Int
    /// Number of values looked at (2 per complex element).
    public var count: Int

    /// Statistics of `tensor`, computed in chunks so memory stays bounded.
    /// - Throws: `TensorError.unsupportedDType` for float8 and complex32.
    public static func compute(_ tensor: Tensor) throws -> TensorStats {
        guard tensor.dtype.isNumericallyReadable else {
            throw TensorError.unsupportedDType(tensor.dtype, "no statistics")
        }
        return try tensor.withContiguousBytes { raw in
            var s = TensorStats(min: nil, max: nil, mean: nil, std: nil, nanCount: 0, infCount: 0, zeroCount: 0, count: 0)
            let per = tensor.dtype.isComplex ? 2 : 1
            let total = tensor.elementCount * per
            let unit = tensor.dtype.isComplex ? tensor.dtype.itemSize / 2 : tensor.dtype.itemSize
            let decodeType: DType = tensor.dtype == .complex64 ? .float32 : (tensor.dtype == .complex128 ? .float64 : tensor.dtype)
            var lo = Double.infinity, hi = -Double.infinity
            // Welford's update keeps the variance accurate for large tensors
            var n = 0.0, mean = 0.0, m2 = 0.0
            let chunk = 1 << 16
            var buffer = [Double](repeating: 0, count: chunk)
            var start = 0
            while start < total {
                let c = Swift.min(chunk, total - start)
                let part = UnsafeRawBufferPointer(rebasing: raw[start * unit ..< (start + c) * unit])
                buffer.withUnsafeMutableBufferPointer { b in
                    ElementDecode.decode(part, dtype: decodeType, into: UnsafeMutableBufferPointer(rebasing: b[0 ..< c]))
                }
                for i in 0 ..< c {
                    let v = buffer[i]
                    if v.isNaN { s.nanCount += 1; continue }
                    if v.isInfinite { s.infCount += 1 }
                    if v == 0 { s.zeroCount += 1 }
                    if v < lo { lo = v }
                    if v > hi { hi = v }
                    n += 1
                    let d = v - mean
                    mean += d / n
                    m2 += d * (v - mean)
                }
                start += c
            }
            s.count = total
            if n > 0 {
                s.min = lo
                s.max = hi
                s.mean = mean
                s.std = n > 1 ? (m2 / (n - 1)).squareRoot() : .nan
            }
            return s
        }
    }
}
