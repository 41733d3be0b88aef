// N images, C channels, H rows, W columns (NCHW).

/// The input transform of Winograd's F(4×4, 3×3) (`V = Bᵀ·d·B` for every 6×6 input patch `d`),
/// written straight into the GEMM panel layout of `PackedGemm`, 16 tiles per vector.
///
/// Per tile, the six patch rows are loaded as vectors (from a zero-padded copy of the tile row's
/// input rows, so borders need no tests) and transformed along the rows; the results of 16
/// consecutive tiles are gathered in a small staging block and transformed along the columns with
/// one tile per lane, so each of the 36 outputs is one 16-float store.
public enum WinogradInput4x4 {
    typealias V16 = SIMD16<Float>
    typealias V8 = SIMD8<Float>

    /// `Bᵀ·d` along one axis for six values (works on any lane count).
    @inline(__always)
    static func bt<T: SIMD>(_ d0: T, _ d1: T, _ d2: T, _ d3: T, _ d4: T, _ d5: T) -> (T, T, T, T, T, T) where T.Scalar == Float {
        let a = d4 - 4 * d2, b = d3 - 4 * d1
        let c = d4 - d2, e = 2 * (d3 - d1)
        return (4 * d0 - 5 * d2 + d4, a + b, a - b, c + e, c - e, 4 * d1 - 5 * d3 + d5)
    }

    /// Transforms channel `channel` of the tile rows `rows` (numbered through the batch: row `r` is
    /// tile row `r % tilesH` of image `r / tilesH`) into `v`: `V[ξ]` starts `xiStride` floats after
    /// `V[ξ−1]`, and tile `t` (counted from the band's first) of channel `c` lies at
    /// `(t / 48)·channels·48 + c·48 + t % 48`. Lanes past the band's last tile, up to the next
    /// multiple of 16, are overwritten with finite values.
    public static func transform(
        input x: UnsafePointer<Float>, channels: Int, height h: Int, width w: Int, padTop: Int, padLeft: Int,
        tilesH: Int, tilesW: Int, rows: Range<Int>, channel ch: Int,
        into v: UnsafeMutablePointer<Float>, xiStride: Int
    ) {
        let panelWidth = PackedGemm.panelWidth
        let paddedWidth = 4 * tilesW + 2 + 8  // every 8-float patch-row load stays inside
        let tiles = rows.count * tilesW
        withUnsafeTemporaryAllocation(byteCount: (6 * paddedWidth + 36 * 16) * 4, alignment: 64) { raw in
            guard let base = raw.baseAddress else { return }
            let staging = base.bindMemory(to: Float.self, capacity: 36 * 16 + 6 * paddedWidth)
            let padded = staging + 36 * 16
            staging.initialize(repeating: 0, count: 36 * 16)
            var t = 0
            for gr in rows {
                let img = gr / tilesH, ty = gr % tilesH
                let src = x + (img * channels + ch) * h * w
                let iy0 = ty * 4 - padTop
                // the six input rows of this tile row, zero outside the image
                for r in 0 ..< 6 {
                    let dst = padded + r * paddedWidth
                    let iy = iy0 + r
                    if iy < 0 || iy >= h {
                        dst.update(repeating: 0, count: paddedWidth)
                        continue
                    }
                    let row = src + iy * w
                    // padded column u holds input column u − padLeft
                    let lo = min(paddedWidth, padLeft), hi = min(paddedWidth, padLeft + w)
                    if lo > 0 { dst.update(repeating: 0, count: lo) }
                    if hi > lo { (dst + lo).update(from: row, count: hi - lo) }
                    if paddedWidth > hi { (dst + hi).update(repeating: 0, count: paddedWidth - hi) }
                }
                for tx in 0 ..< tilesW {
                    let lane = t % 16
                    @inline(__always) func patchRow(_ r: Int) -> V8 {
                        UnsafeRawPointer(padded + r * paddedWidth + 4 * tx).loadUnaligned(as: V8.self)
                    }
                    let (r0, r1, r2, r3, r4, r5) = bt(patchRow(0), patchRow(1), patchRow(2), patchRow(3), patchRow(4), patchRow(5))
                    @inline(__always) func stage(_ row: V8, _ i: Int) {
                        let s = staging + i * 6 * 16 + lane
                        s[0] = row[0]; s[16] = row[1]; s[32] = row[2]; s[48] = row[3]; s[64] = row[4]; s[80] = row[5]
                    }
                    stage(r0, 0); stage(r1, 1); stage(r2, 2); stage(r3, 3); stage(r4, 4); stage(r5, 5)
                    t += 1
                    if lane == 15 || t == tiles { flush(staging, firstTile: t - 1 - lane, channels: channels, channel: ch,
                                                        panelWidth: panelWidth, into: v, xiStride: xiStride) }
                }
            }
        }
    }

    /// Column transform of 16 staged tiles starting at `firstTile` (a multiple of 16) and the 36 stores.
    @inline(__always)
    static func flush(_ staging: UnsafeMutablePointer<Float>, firstTile: Int, channels: Int, channel ch: Int,
                      panelWidth: Int, into v: UnsafeMutablePointer<Float>, xiStride: Int) {
        let offset = (firstTile / panelWidth * channels + ch) * panelWidth + firstTile % panelWidth
        for i in 0 ..< 6 {
            let s = UnsafeRawPointer(staging + i * 6 * 16)
            let (o0, o1, o2, o3, o4, o5) = bt(s.load(as: V16.self), s.load(fromByteOffset: 64, as: V16.self),
                                              s.load(fromByteOffset: 128, as: V16.self), s.load(fromByteOffset: 192, as: V16.self),
                                              s.load(fromByteOffset: 256, as: V16.self), s.load(fromByteOffset: 320, as: V16.self))
            let d = v + 6 * i * xiStride + offset
            UnsafeMutableRawPointer(d).storeBytes(of: o0, as: V16.self)
            UnsafeMutableRawPointer(d + xiStride).storeBytes(of: o1, as: V16.self)
            UnsafeMutableRawPointer(d + 2 * xiStride).storeBytes(of: o2, as: V16.self)
            UnsafeMutableRawPointer(d + 3 * xiStride).storeBytes(of: o3, as: V16.self)
            UnsafeMutableRawPointer(d + 4 * xiStride).storeBytes(of: o4, as: V16.self)
            UnsafeMutableRawPointer(d + 5 * xiStride).storeBytes(of: o5, as: V16.self)
        }
    }
}

