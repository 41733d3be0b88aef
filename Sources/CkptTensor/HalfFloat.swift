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
