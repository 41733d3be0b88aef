#if canImport(Glibc)
import Glibc
#endif

/// What this CPU offers, read once from `/proc/cpuinfo` (empty elsewhere): the switch for every
/// call into `CkptAVX512`, the one target compiled for CPU extensions (code compiled for AVX-512
/// must never run before this check, so the check lives here, compiled for any x86-64).
public enum CPUFlags {
    /// The `flags` line's words (`avx512f`, `sha_ni`, `f16c`, …).
    public static let flags: Set<String> = {
        #if os(Linux) && arch(x86_64)
        guard let f = fopen("/proc/cpuinfo", "r") else { return [] }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, f) > 0 {
            guard let l = line else { break }
            let text = String(cString: l)
            if text.hasPrefix("flags") {
                return Set(text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == ":" }).map(String.init))
            }
        }
        return []
        #else
        return []
        #endif
    }()

    /// True when `CkptAVX512`'s kernels may run here.
    public static let hasAVX512: Bool = flags.contains("avx512f") && flags.contains("f16c")
}
