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

    /// Statistics of `tensor`, computed in chunks read with `Tensor.readElements` (pread where
    /// the file allows), so memory stays at a chunk and nothing of the file needs mapping.
    /// - Throws: `TensorError.unsupportedDType` for float8 and complex32; `TensorError.tooLarge`
    ///   for a runaway expanded view; storage read errors.
    public static func compute(_ tensor: Tensor) throws -> TensorStats {
        guard tensor.dtype.isNumericallyReadable else {
            throw TensorError.unsupportedDType(tensor.dtype, "no statistics")
        }
        try tensor.checkMaterializable()
        // quantized tensors count their real values, (q - zero_point) * scale
        let dequantizer = tensor.dtype.isQuantized ? try Dequantizer(tensor) : nil
        let step = TensorDifference.chunkElements
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(1, Swift.min(step, tensor.elementCount)) * tensor.dtype.itemSize, alignment: 64)
        defer { buffer.deallocate() }
        var acc = Accumulator()
        var at = 0
        while at < tensor.elementCount {
            let c = Swift.min(step, tensor.elementCount - at)
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0 ..< c * tensor.dtype.itemSize])
            try tensor.readElements(at ..< at + c, into: part)
            if let dequantizer {
                let real = UnsafeMutableBufferPointer<Double>.allocate(capacity: c)
                defer { real.deallocate() }
                dequantizer.apply(UnsafeRawBufferPointer(part), from: at, into: real)
                acc.add(UnsafeRawBufferPointer(real), dtype: .float64)
            } else {
                acc.add(UnsafeRawBufferPointer(part), dtype: tensor.dtype)
            }
            at += c
        }
        return acc.result
    }

    /// Welford's running statistics over chunks of elements.
    private struct Accumulator {
        var s = TensorStats(min: nil, max: nil, mean: nil, std: nil, nanCount: 0, infCount: 0, zeroCount: 0, count: 0)
        var lo = Double.infinity, hi = -Double.infinity
        var n = 0.0, mean = 0.0, m2 = 0.0

        var result: TensorStats {
            var out = s
            if n > 0 {
                out.min = lo
                out.max = hi
                out.mean = mean
                out.std = n > 1 ? (m2 / (n - 1)).squareRoot() : .nan
            }
            return out
        }

        mutating func add(_ raw: UnsafeRawBufferPointer, dtype: DType) {
            let unit = dtype.isComplex ? dtype.itemSize / 2 : dtype.itemSize
            let total = raw.count / unit
            let decodeType: DType = dtype == .complex64 ? .float32 : (dtype == .complex128 ? .float64 : dtype)
            let chunk = 1 << 16
            var buffer = [Double](repeating: 0, count: Swift.min(chunk, total))
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
                    // Welford's update keeps the variance accurate for large tensors
                    n += 1
                    let d = v - mean
                    mean += d / n
                    m2 += d * (v - mean)
                }
                start += c
            }
            s.count += total
        }
    }

    /// The statistics of the whole tensor read at once, through the same accumulator (the
    /// reference the chunked reads are tested against).
    static func computeWhole(_ tensor: Tensor) throws -> TensorStats {
        try tensor.withContiguousBytes { raw in
            var acc = Accumulator()
            acc.add(raw, dtype: tensor.dtype)
            return acc.result
        }
    }
}
