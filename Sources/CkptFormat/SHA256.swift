import CkptTensor
import Foundation

/// SHA-256 (FIPS 180-4), for the provenance a transplant records (`sha256sum` of the source).
public struct SHA256: Sendable {
    /// A function that runs whole 64-byte blocks through the 8-word state (an accelerated one).
    public typealias BlockFunction = @Sendable (UnsafeMutablePointer<UInt32>, UnsafeRawPointer, Int) -> Void

    private var h: [UInt32] = [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19]
    private let blocks: BlockFunction?
    private var pending: [UInt8] = []
    private var length: UInt64 = 0


    /// A fresh hash; `blocks` replaces the portable block function (the SHA extensions').
    public init(blocks: BlockFunction? = nil) { self.blocks = blocks }

    /// Adds `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        length &+= UInt64(bytes.count)
        var at = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, bytes.count)
            pending += UnsafeRawBufferPointer(start: base, count: take)
            at = take
            if pending.count == 64 {
                let block = pending
                block.withUnsafeBytes { raw in
                    if let blocks { h.withUnsafeMutableBufferPointer { blocks($0.baseAddress!, raw.baseAddress!, 1) } } else { compress(raw.baseAddress!) }
                }
                pending.removeAll(keepingCapacity: true)
            }
        }
        let whole = (bytes.count - at) / 64
        if let blocks, whole > 0 {
            h.withUnsafeMutableBufferPointer { blocks($0.baseAddress!, base + at, whole) }
            at += whole * 64
        }
        while bytes.count - at >= 64 {
            compress(base + at)
            at += 64
        }
        if at < bytes.count { pending += UnsafeRawBufferPointer(start: base + at, count: bytes.count - at) }
    }

    /// Adds `bytes`.
    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest as 64 lower-case hex digits.
    public mutating func finalizeHex() -> String {
        let bits = length &* 8
        var tail: [UInt8] = [0x80]
        while (pending.count + tail.count) % 64 != 56 { tail.append(0) }
        for i in (0 ..< 8).reversed() { tail.append(UInt8(truncatingIfNeeded: bits >> (UInt64(i) * 8))) }
        let saved = length
        update(tail)
        length = saved
        return h.map { String(format: "%08x", $0) }.joined()
    }

    @inline(__always) private func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

    private mutating func compress(_ p: UnsafeRawPointer) {
        var w = [UInt32](repeating: 0, count: 64)
        w.withUnsafeMutableBufferPointer { w in
            for i in 0 ..< 16 { w[i] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }
            for i in 16 ..< 64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            SHA256RoundConstants.k.withUnsafeBufferPointer { k in
                for i in 0 ..< 64 {
                    let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                    let ch = (e & f) ^ (~e & g)
                    let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                    let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                    let maj = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ maj
                    hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
                }
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
    }

    /// The SHA-256 of a whole file, read in 4 MiB chunks.
    /// - Throws: `FormatError(.io)` when the file cannot be read.
    public static func hexDigest(ofFile path: String, blocks: BlockFunction? = nil) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw FormatError(.io, file: path, "cannot open for reading")
        }
        defer { try? handle.close() }
        var hash = SHA256(blocks: blocks)
        while true {
            let chunk = handle.readData(ofLength: 4 << 20)
            if chunk.isEmpty { break }
            chunk.withUnsafeBytes { hash.update($0) }
        }
        return hash.finalizeHex()
    }
}
