// SHA-256 on the x86 SHA extensions (sha256rnds2 / sha256msg1 / sha256msg2), compiled here with
// -msha because this is the one target built for CPU extensions. Callers check the `sha_ni` flag.
import _Builtin_intrinsics.intel

private typealias Words = SIMD4<UInt32>

@inline(__always) private func m(_ w: Words) -> __m128i { unsafeBitCast(w, to: __m128i.self) }
@inline(__always) private func w(_ m: __m128i) -> Words { unsafeBitCast(m, to: Words.self) }


/// SHA-256 compression of whole 64-byte blocks with the SHA extensions.
public enum SHA256Extensions {
    /// Runs `count` blocks at `data` through the state `h` (8 words, a…h); `k` holds the 64
    /// round constants.
    public static func compress(_ h: UnsafeMutablePointer<UInt32>, _ data: UnsafeRawPointer, _ count: Int, k: UnsafePointer<UInt32>) {
        // state as ABEF / CDGH, the layout sha256rnds2 wants
        let abcd = Words(h[0], h[1], h[2], h[3])
        let efgh = Words(h[4], h[5], h[6], h[7])
        var s0 = Words(efgh[1], efgh[0], abcd[1], abcd[0])  // F E B A
        var s1 = Words(efgh[3], efgh[2], abcd[3], abcd[2])  // H G D C
        do {
            let k = UnsafeRawPointer(k)
            for b in 0 ..< count {
                let block = data + b * 64
                @inline(__always) func load(_ i: Int) -> Words {
                    let v = block.loadUnaligned(fromByteOffset: 16 * i, as: Words.self)
                    return Words(v[0].byteSwapped, v[1].byteSwapped, v[2].byteSwapped, v[3].byteSwapped)
                }
                var w0 = load(0), w1 = load(1), w2 = load(2), w3 = load(3)
                let save0 = s0
                let save1 = s1
                // four rounds on message words `cur`; `next` gets msg2 (from `prev`), `prev` gets msg1
                @inline(__always) func group(_ g: Int, _ cur: Words, _ prev: inout Words, _ next: inout Words) {
                    var x = cur &+ k.loadUnaligned(fromByteOffset: 16 * g, as: Words.self)
                    s1 = w(_mm_sha256rnds2_epu32(m(s1), m(s0), m(x)))
                    if g >= 3 && g <= 14 {
                        let t = Words(prev[1], prev[2], prev[3], cur[0])
                        next = w(_mm_sha256msg2_epu32(m(next &+ t), m(cur)))
                    }
                    x = Words(x[2], x[3], x[2], x[3])
                    s0 = w(_mm_sha256rnds2_epu32(m(s0), m(s1), m(x)))
                    if g >= 1 && g <= 12 { prev = w(_mm_sha256msg1_epu32(m(prev), m(cur))) }
                }
                var g = 0
                while g < 16 {
                    group(g, w0, &w3, &w1)
                    group(g + 1, w1, &w0, &w2)
                    group(g + 2, w2, &w1, &w3)
                    group(g + 3, w3, &w2, &w0)
                    g += 4
                }
                s0 = s0 &+ save0
                s1 = s1 &+ save1
            }
        }
        h[0] = s0[3]; h[1] = s0[2]; h[4] = s0[1]; h[5] = s0[0]
        h[2] = s1[3]; h[3] = s1[2]; h[6] = s1[1]; h[7] = s1[0]
    }
}
