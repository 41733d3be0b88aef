internal import CkptAVX512
import CkptTensor

/// What this CPU offers, read once from `/proc/cpuinfo` (empty elsewhere): the switch for every
/// call into `CkptAVX512`, the one target compiled for CPU extensions.
public enum CPUFeatures {
    /// The `flags` line's words (`avx512f`, `sha_ni`, …).
    public static var flags: Set<String> { CPUFlags.flags }

    /// SHA-256 block function on the SHA extensions when this CPU has them (`sha_ni`), else nil
    /// (the portable one is used).
    public static var sha256Blocks: (@Sendable (UnsafeMutablePointer<UInt32>, UnsafeRawPointer, Int) -> Void)? {
        guard flags.contains("sha_ni"), flags.contains("ssse3") else { return nil }
        return { @Sendable h, data, count in
            SHA256RoundConstants.k.withUnsafeBufferPointer { SHA256Extensions.compress(h, data, count, k: $0.baseAddress!) }
        }
    }
}
