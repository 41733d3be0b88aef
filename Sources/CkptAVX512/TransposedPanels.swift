// N images, C channels, H rows, W columns (NCHW).

/// The operands of a convolution's weight gradient `dW[C_out × C_in·kH·kW] = dY · unfold(x)ᵀ` laid
/// out for `PackedGemm.multiplyAdd(panelsOfA:…)`: `dY` as 8-row panels of `A` and the unfolded
/// input, transposed, as 48-column panels of `B`, both made with 16×16 in-register transposes
/// (the sources run along pixels, the panels across them).
public enum TransposedPanels {
    typealias V = SIMD16<Float>
    typealias Tile = (V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V)

    /// Rows `matrixRows` of the im2col matrix (`PanelUnfold`'s, for the pixels `pixels`
    /// numbered through the batch) transposed into panels of `B`: `B[j, r − r₀] = col[r, j]` for
    /// `j` counted from the range's start, at `((r − r₀) / 48)·pixels.count·48 + j·48 + (r − r₀) % 48`;
    /// `b` is 64-byte aligned. Columns past the last row in the last panel are zero.
    public static func unfold(
        input: UnsafePointer<Float>, imageStride: Int, channels: Int, height h: Int, width w: Int,
        kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int),
        outputHeight oh: Int, outputWidth ow: Int, pixels: Range<Int>, matrixRows: Range<Int>,
        into b: UnsafeMutablePointer<Float>
    ) {
        let depth = pixels.count
        let pixelPanels = (depth + 47) / 48
        // the block 48 rows at a time, as the unfold makes it (pixel panel `p` at tile + p·48·48, row `r` of it
        // at + r·48), then each pixel panel transposed into B
        withUnsafeTemporaryAllocation(byteCount: max(1, pixelPanels) * 48 * 48 * 4, alignment: 64) { raw in
            guard let tile = raw.baseAddress?.bindMemory(to: Float.self, capacity: pixelPanels * 48 * 48) else { return }
            var r0 = matrixRows.lowerBound
            while r0 < matrixRows.upperBound {
                let r1 = min(r0 + 48, matrixRows.upperBound)
                PanelUnfold.unfold(input: input, imageStride: imageStride, channels: channels, height: h, width: w,
                                   kernel: kernel, stride: stride, padding: padding, dilation: dilation,
                                   outputHeight: oh, outputWidth: ow, pixels: pixels, matrixRows: r0 ..< r1, panelRows: 48, into: tile)
                if r1 - r0 < 48 {
                    // B's columns past the last row are zero
                    for p in 0 ..< pixelPanels {
                        (tile + p * 48 * 48 + (r1 - r0) * 48).update(repeating: 0, count: (48 - r1 + r0) * 48)
                    }
                }
                let panel = b + (r0 - matrixRows.lowerBound) / 48 * depth * 48
                for p in 0 ..< pixelPanels {
                    transpose48(tile + p * 48 * 48, columns: min(48, depth - p * 48), into: panel + p * 48 * 48)
                }
                r0 = r1
            }
        }
    }

    /// `unfold` for a stride-1, undilated convolution that keeps its planes' size (`H_out = H`,
    /// `W_out = W`) over whole groups of 16 pixels (`pixels` starts and ends on multiples of 16, and
    /// a plane holds a multiple of 16): row `(c, i, j)` of the matrix is plane `c` shifted by
    /// `(i − pad_h)·W + j − pad_w`, so each 16×16 transpose loads its rows straight from the input,
    /// with the padding masked to zero (lane by lane only where a kernel row leaves the image).
    public static func unfoldSamePlane(
        input: UnsafePointer<Float>, imageStride: Int, height h: Int, width w: Int, kernel: (Int, Int), padding: (Int, Int),
        pixels: Range<Int>, matrixRows: Range<Int>, into b: UnsafeMutablePointer<Float>
    ) {
        typealias I = SIMD16<Int32>
        let plane = h * w
        let depth = pixels.count
        let (kh, kw) = kernel, (ph, pw) = padding
        withUnsafeTemporaryAllocation(byteCount: 16 * 64, alignment: 64) { raw in
            guard let rowsBuffer = raw.baseAddress?.bindMemory(to: V.self, capacity: 16) else { return }
            var g = 0
            while g < depth {
                let q0 = pixels.lowerBound + g
                let image = input + q0 / plane * imageStride
                let q = q0 % plane
                // each lane's (y, x)
                var xv = I(), yv = I()
                var (y, x) = (q / w, q % w)
                for l in 0 ..< 16 {
                    xv[l] = Int32(x)
                    yv[l] = Int32(y)
                    x += 1
                    if x == w { x = 0; y += 1 }
                }
                let yFirst = Int(yv[0]), yLast = Int(yv[15])
                var c = matrixRows.lowerBound / (kh * kw)
                var ki = (matrixRows.lowerBound / kw) % kh
                var kj = matrixRows.lowerBound % kw
                var r0 = matrixRows.lowerBound
                while r0 < matrixRows.upperBound {
                    for s in 0 ..< 16 {
                        if r0 + s >= matrixRows.upperBound {
                            rowsBuffer[s] = V()
                            continue
                        }
                        let dy = ki - ph, dx = kj - pw
                        let channel = image + c * plane
                        if yFirst + dy >= 0 && yLast + dy < h {
                            var v = UnsafeRawPointer(channel + q + dy * w + dx).loadUnaligned(as: V.self)
                            // lanes whose column leaves the image: the sign bit of ix or of W − 1 − ix, spread
                            // (branch-free: SIMD's replace(with:where:) runs lane by lane)
                            let ix = xv &+ Int32(dx)
                            let outside = (ix &>> 31) | ((I(repeating: Int32(w - 1)) &- ix) &>> 31)
                            v = unsafeBitCast(unsafeBitCast(v, to: I.self) & ~outside, to: V.self)
                            rowsBuffer[s] = v
                        } else {
                            var v = V()
                            for l in 0 ..< 16 {
                                let iy = Int(yv[l]) + dy, ix = Int(xv[l]) + dx
                                if iy >= 0 && iy < h && ix >= 0 && ix < w { v[l] = channel[iy * w + ix] }
                            }
                            rowsBuffer[s] = v
                        }
                        kj += 1
                        if kj == kw {
                            kj = 0
                            ki += 1
                            if ki == kh { ki = 0; c += 1 }
                        }
                    }
                    @inline(__always) func row(_ s: Int) -> V { rowsBuffer[s] }
                    let local = r0 - matrixRows.lowerBound
                    let out = b + local / 48 * depth * 48 + g * 48 + local % 48
                    @inline(__always) func put(_ v: V, _ col: Int) {
                        UnsafeMutableRawPointer(out + col * 48).storeBytes(of: v, as: V.self)
                    }
                    transpose16(row, put)
                    r0 += 16
                }
                g += 16
            }
        }
    }

    /// Rows `0 ..< m` of `A` (row `o`, column `j` at `source(o) + j`, for columns `column ..< column + count`)
    /// into 8-row panels of a matrix `depth` columns deep: row `o`, column `j` at
    /// `(o / 8)·8·depth + j·8 + o % 8`, rows past `m` up to the next multiple of 8 zero.
    public static func packRows(_ a: UnsafePointer<Float>, rowStride: Int, rows m: Int, count: Int, column: Int,
                                depth: Int, into panels: UnsafeMutablePointer<Float>) {
        let zero = V()
        var o0 = 0
        while o0 < m {
            // sixteen rows (two panels) at a time, sixteen columns per transpose
            let live = min(16, m - o0)
            let panel0 = panels + o0 * depth + column * 8
            let panel1 = panel0 + 8 * depth
            var j = 0
            while j + 16 <= count {
                @inline(__always) func row(_ r: Int) -> V {
                    r < live ? UnsafeRawPointer(a + (o0 + r) * rowStride + j).loadUnaligned(as: V.self) : zero
                }
                // column col: rows 0–7 to the first panel, 8–15 to the second
                @inline(__always) func put(_ v: V, _ col: Int) {
                    UnsafeMutableRawPointer(panel0 + (j + col) * 8).storeBytes(of: v.lowHalf, as: SIMD8<Float>.self)
                    if live > 8 {
                        UnsafeMutableRawPointer(panel1 + (j + col) * 8).storeBytes(of: v.highHalf, as: SIMD8<Float>.self)
                    }
                }
                transpose16(row, put)
                j += 16
            }
            while j < count {
                for r in 0 ..< min(16, (live + 7) / 8 * 8) {
                    let dst = r < 8 ? panel0 + j * 8 + r : panel1 + j * 8 + r - 8
                    dst.pointee = r < live ? a[(o0 + r) * rowStride + j] : 0
                }
                j += 1
            }
            o0 += 16
        }
    }

    /// The first `columns` columns of a 48×48 row-major tile into `dst` transposed (column `j` at
    /// `dst + j·48`), by nine 16×16 transposes.
    @inline(__always)
    static func transpose48(_ tile: UnsafePointer<Float>, columns: Int, into dst: UnsafeMutablePointer<Float>) {
        for jb in 0 ..< 3 where jb * 16 < columns {
            let live = columns - jb * 16
            for rb in 0 ..< 3 {
                let src = tile + rb * 16 * 48 + jb * 16
                @inline(__always) func row(_ r: Int) -> V { UnsafeRawPointer(src + r * 48).load(as: V.self) }
                let out = dst + jb * 16 * 48 + rb * 16
                @inline(__always) func put(_ v: V, _ col: Int) {
                    if col < live { UnsafeMutableRawPointer(out + col * 48).storeBytes(of: v, as: V.self) }
                }
                transpose16(row, put)
            }
        }
    }

    /// The sixteen vectors `row(0) … row(15)` transposed: `put(v, k)` receives column `k` (its
    /// element `s` from `row(s)`), in the order the unzips leave them.
    @inline(__always)
    static func transpose16(_ row: (Int) -> V, _ put: (V, Int) -> Void) {
        var t: Tile = (row(0), row(8), row(4), row(12), row(2), row(10), row(6), row(14),
                       row(1), row(9), row(5), row(13), row(3), row(11), row(7), row(15))
        transposeReversed(&t)
        put(t.0, 0); put(t.1, 8); put(t.2, 4); put(t.3, 12); put(t.4, 2); put(t.5, 10); put(t.6, 6); put(t.7, 14)
        put(t.8, 1); put(t.9, 9); put(t.10, 5); put(t.11, 13); put(t.12, 3); put(t.13, 11); put(t.14, 7); put(t.15, 15)
    }

    /// Four rounds of pairwise unzips: with source row `bitrev(p)` at position `p` (bitrev over four
    /// bits), position `k` ends up holding source column `bitrev(k)`, element `s` from row `s`.
    @inline(__always)
    static func transposeReversed(_ t: inout Tile) {
        for _ in 0 ..< 4 {
            // element by element, which LLVM turns into two vpermi2ps (SIMD32's evenHalf/oddHalf
            // were left as an out-of-line call in unfoldSamePlane, through memory)
            @inline(__always) func unzip(_ a: V, _ b: V) -> (V, V) {
                (V(a[0], a[2], a[4], a[6], a[8], a[10], a[12], a[14], b[0], b[2], b[4], b[6], b[8], b[10], b[12], b[14]),
                 V(a[1], a[3], a[5], a[7], a[9], a[11], a[13], a[15], b[1], b[3], b[5], b[7], b[9], b[11], b[13], b[15]))
            }
            let (u0, u1) = unzip(t.0, t.8), (u2, u3) = unzip(t.1, t.9)
            let (u4, u5) = unzip(t.2, t.10), (u6, u7) = unzip(t.3, t.11)
            let (u8, u9) = unzip(t.4, t.12), (u10, u11) = unzip(t.5, t.13)
            let (u12, u13) = unzip(t.6, t.14), (u14, u15) = unzip(t.7, t.15)
            t = (u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, u12, u13, u14, u15)
        }
    }
}
