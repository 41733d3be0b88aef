// Float conversions on AVX-512 (F16C's vcvtps2ph / vcvtph2ps, 16 lanes at a time). Callers check
// the CPU first (`CPUFlags.hasAVX512`): this target is compiled for AVX-512.

/// float32 ↔ float16 conversions of whole buffers, rounding to nearest even as torch's `.half()`
/// does on its vectorised CPU path.
public enum CastKernels {
    /// `d[i] = float16(s[i])` for `i < count`.
    @inline(never)
    public static func float32ToFloat16(_ s: UnsafeRawPointer, _ d: UnsafeMutableRawPointer, count: Int) {
        var i = 0
        while i + 16 <= count {
            let v = s.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            d.storeBytes(of: SIMD16<Float16>(v), toByteOffset: i * 2, as: SIMD16<Float16>.self)
            i += 16
        }
        while i < count {
            d.storeBytes(of: Float16(s.loadUnaligned(fromByteOffset: i * 4, as: Float.self)), toByteOffset: i * 2, as: Float16.self)
            i += 1
        }
    }

    /// `d[i] = float32(s[i])` for `i < count` (exact).
    @inline(never)
    public static func float16ToFloat32(_ s: UnsafeRawPointer, _ d: UnsafeMutableRawPointer, count: Int) {
        var i = 0
        while i + 16 <= count {
            let v = s.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<Float16>.self)
            d.storeBytes(of: SIMD16<Float>(v), toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        while i < count {
            d.storeBytes(of: Float(s.loadUnaligned(fromByteOffset: i * 2, as: Float16.self)), toByteOffset: i * 4, as: Float.self)
            i += 1
        }
    }
}
