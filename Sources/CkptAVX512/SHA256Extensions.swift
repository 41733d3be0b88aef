// SHA-256 on the x86 SHA extensions (sha256rnds2 / sha256msg1 / sha256msg2), compiled here with
// -msha because this is the one target built for CPU extensions. Callers check the `sha_ni` flag.
import _Builtin_intrinsics.intel

private typealias Words = SIMD4<UInt32>

@inline(__always) private func m(_ w: Words) -> __m128i { unsafeBitCast(w, to: __m128i.self) }
@inline(__always) private func w(_ m: __m128i) -> Words { unsafeBitCast(m, to: Words.self) }

private let roundConstants: [UInt32] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]

/// SHA-256 compression of whole 64-byte blocks with the SHA extensions.
public enum SHA256Extensions {
    /// Runs `count` blocks at `data` through the state `h` (8 words, a…h).
    public static func compress(_ h: UnsafeMutablePointer<UInt32>, _ data: UnsafeRawPointer, _ count: Int) {
        // state as ABEF / CDGH, the layout sha256rnds2 wants
        let abcd = Words(h[0], h[1], h[2], h[3])
        let efgh = Words(h[4], h[5], h[6], h[7])
        var s0 = Words(efgh[1], efgh[0], abcd[1], abcd[0])  // F E B A
        var s1 = Words(efgh[3], efgh[2], abcd[3], abcd[2])  // H G D C
        roundConstants.withUnsafeBufferPointer { kp in
            let k = UnsafeRawPointer(kp.baseAddress!)
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
