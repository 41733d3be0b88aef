// N images, C channels, H rows, W columns (NCHW).

/// The input transform of Winograd's F(4×4, 3×3) (`V = Bᵀ·d·B` for every 6×6 input patch `d`),
/// written straight into the GEMM panel layout of `PackedGemm`, 16 tiles per vector.
///
/// Per tile, the six patch rows are loaded as vectors (from a zero-padded copy of the tile row's
/// input rows, so borders need no tests) and transformed along the rows; the results of 16
/// consecutive tiles (one 48-float row each) are turned into one vector per value by three 16×16
/// in-register transposes and transformed along the columns with one tile per lane, so each of
/// the 36 outputs is one 16-float store.
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
        withUnsafeTemporaryAllocation(byteCount: (6 * paddedWidth + 36 * 16 + 16 * 48) * 4, alignment: 64) { raw in
            guard let base = raw.baseAddress else { return }
            let staging = base.bindMemory(to: Float.self, capacity: 36 * 16 + 16 * 48 + 6 * paddedWidth)
            // tile `lane`'s row transform: value (i, k) at `lane·48 + i·8 + k`
            let tileRows = staging + 36 * 16
            let padded = tileRows + 16 * 48
            staging.initialize(repeating: 0, count: 36 * 16 + 16 * 48)
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
                    let row = UnsafeMutableRawPointer(tileRows + lane * 48)
                    row.storeBytes(of: r0, as: V8.self)
                    row.storeBytes(of: r1, toByteOffset: 32, as: V8.self)
                    row.storeBytes(of: r2, toByteOffset: 64, as: V8.self)
                    row.storeBytes(of: r3, toByteOffset: 96, as: V8.self)
                    row.storeBytes(of: r4, toByteOffset: 128, as: V8.self)
                    row.storeBytes(of: r5, toByteOffset: 160, as: V8.self)
                    t += 1
                    if lane == 15 || t == tiles {
                        gather(tileRows, into: staging)
                        flush(staging, firstTile: t - 1 - lane, channels: channels, channel: ch, panelWidth: panelWidth,
                              into: v, xiStride: xiStride)
                    }
                }
            }
        }
    }

    /// The row transforms of 16 tiles (`tileRows`, value `(i, k)` of tile `l` at `l·48 + i·8 + k`)
    /// into `staging` as one vector per value (`(i·6 + k)·16 + l`), by three 16×16 transposes.
    @inline(__always)
    static func gather(_ tileRows: UnsafePointer<Float>, into staging: UnsafeMutablePointer<Float>) {
        for block in 0 ..< 3 {
            @inline(__always) func row(_ l: Int) -> V16 { UnsafeRawPointer(tileRows + l * 48 + 16 * block).load(as: V16.self) }
            @inline(__always) func put(_ column: V16, _ j: Int) {
                let i = 2 * block + j / 8, k = j % 8
                if k < 6 { UnsafeMutableRawPointer(staging + (i * 6 + k) * 16).storeBytes(of: column, as: V16.self) }
            }
            TransposedPanels.transpose16(row, put)
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


/// The output transform of F(4×4, 3×3) (`Y = Aᵀ·M·A` per tile, plus bias and ReLU), 16 tiles per
/// vector: the 36 values of 16 consecutive tiles are contiguous in `M`, so they load as 36 vectors;
/// the 16 results of 16 tiles are turned into one vector per tile by a 16×16 in-register
/// transpose, whose four rows go to the tile's 4×4 place in the output.
public enum WinogradOutput4x4 {
    typealias V16 = SIMD16<Float>

    /// `Aᵀ·m` along one axis for six values.
    @inline(__always)
    static func at(_ m0: V16, _ m1: V16, _ m2: V16, _ m3: V16, _ m4: V16, _ m5: V16) -> (V16, V16, V16, V16) {
        let a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4
        return (m0 + a + c, b + 2 * d, a + 4 * c, b + 8 * d + m5)
    }

    /// Output channel `channel` of the band's tile rows `rows` (numbered through the batch) from
    /// `M[ξ]` (`C_out × tiles`, row-major, `M[ξ]` at `m + ξ·C_out·tiles`) into `y` (NCHW, the
    /// whole batch), where each 4×4 tile lies inside the `outputHeight × outputWidth` plane.
    /// `residual` (laid out as `y`) is added after the bias and before the ReLU, when given.
    public static func transform(
        m: UnsafePointer<Float>, outputChannels cout: Int, tiles: Int, channel o: Int, rows: Range<Int>,
        tilesH: Int, tilesW: Int, outputHeight oh: Int, outputWidth ow: Int, bias beta: Float, relu: Bool,
        into y: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>? = nil
    ) {
        // with a residual, the ReLU comes after its add, in the scatter below
        let vectorReLU = relu && residual == nil
        let planeStride = cout * tiles
        let src = m + o * tiles
        withUnsafeTemporaryAllocation(byteCount: 2 * 16 * 16 * 4, alignment: 64) { raw in
            guard let stage = raw.baseAddress?.bindMemory(to: Float.self, capacity: 512) else { return }
            // tile `l`'s results, row `a` at `l·16 + a·4`
            let tileMajor = stage + 256
            var t0 = 0
            while t0 < tiles {
                let count = min(16, tiles - t0)
                @inline(__always) func load(_ xi: Int) -> V16 {
                    let p = src + xi * planeStride + t0
                    if count == 16 { return UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
                    var v = V16()
                    for l in 0 ..< count { v[l] = p[l] }
                    return v
                }
                // along i for each column j: s[a][j]
                var s = (V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(),
                         V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16(), V16())
                withUnsafeMutableBytes(of: &s) { sb in
                    let sv = sb.baseAddress!.assumingMemoryBound(to: V16.self)
                    for j in 0 ..< 6 {
                        let (a0, a1, a2, a3) = at(load(j), load(6 + j), load(12 + j), load(18 + j), load(24 + j), load(30 + j))
                        sv[j] = a0; sv[6 + j] = a1; sv[12 + j] = a2; sv[18 + j] = a3
                    }
                    // along j for each row a, then bias and ReLU, into the staging block [a·4 + b][lane]
                    for a in 0 ..< 4 {
                        let r = sv + 6 * a
                        var (y0, y1, y2, y3) = at(r[0], r[1], r[2], r[3], r[4], r[5])
                        y0 += beta; y1 += beta; y2 += beta; y3 += beta
                        if vectorReLU {
                            let z = V16()
                            y0 = y0.replacing(with: z, where: y0 .< z); y1 = y1.replacing(with: z, where: y1 .< z)
                            y2 = y2.replacing(with: z, where: y2 .< z); y3 = y3.replacing(with: z, where: y3 .< z)
                        }
                        let st = UnsafeMutableRawPointer(stage + a * 64)
                        st.storeBytes(of: y0, as: V16.self)
                        st.storeBytes(of: y1, toByteOffset: 64, as: V16.self)
                        st.storeBytes(of: y2, toByteOffset: 128, as: V16.self)
                        st.storeBytes(of: y3, toByteOffset: 192, as: V16.self)
                    }
                }
                // one vector per tile (value a·4 + b), then each tile's 4×4 block to its place
                @inline(__always) func value(_ k: Int) -> V16 { UnsafeRawPointer(stage + k * 16).load(as: V16.self) }
                @inline(__always) func put(_ tile: V16, _ l: Int) {
                    UnsafeMutableRawPointer(tileMajor + l * 16).storeBytes(of: tile, as: V16.self)
                }
                TransposedPanels.transpose16(value, put)
                var gr = rows.lowerBound + t0 / tilesW, tx = t0 % tilesW
                for l in 0 ..< count {
                    let img = gr / tilesH, ty = gr % tilesH
                    let plane = (img * cout + o) * oh * ow
                    let dst = y + plane
                    let oy = ty * 4, ox = tx * 4
                    let cols = min(4, ow - ox)
                    for a in 0 ..< min(4, oh - oy) {
                        let q = dst + (oy + a) * ow + ox
                        let p = UnsafeRawPointer(tileMajor + l * 16 + a * 4).load(as: SIMD4<Float>.self)
                        if let r = residual.map({ $0 + plane + (oy + a) * ow + ox }) {
                            if cols == 4 {
                                var sum = p + UnsafeRawPointer(r).loadUnaligned(as: SIMD4<Float>.self)
                                if relu { sum = sum.replacing(with: 0, where: sum .< 0) }
                                UnsafeMutableRawPointer(q).storeBytes(of: sum, as: SIMD4<Float>.self)
                            } else {
                                for b in 0 ..< cols { q[b] = relu ? max(p[b] + r[b], 0) : p[b] + r[b] }
                            }
                        } else if cols == 4 {
                            UnsafeMutableRawPointer(q).storeBytes(of: p, as: SIMD4<Float>.self)
                        } else {
                            for b in 0 ..< cols { q[b] = p[b] }
                        }
                    }
                    tx += 1
                    if tx == tilesW { tx = 0; gr += 1 }
                }
                t0 += 16
            }
        }
    }
}
