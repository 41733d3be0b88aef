// A plane is one image's H rows × W columns of one channel (NCHW).

/// The per-plane loop of max pooling with indices (`Pooling.maxForwardWithIndices` in
/// CkptKernels). `withIndices` is `@inlinable`: inlined into CkptKernels it is the portable build
/// (built there without AVX, a sixteen-lane vector is four SSE registers); `withIndicesAVX512` is
/// the same code compiled here for AVX-512, which CkptKernels calls only on CPUs reporting avx512f.
/// Both give the same outputs and indices: comparisons and selects only, no arithmetic on values.
public enum MaxPoolPlanes {
    /// Max pooling of one `height × width` plane into `outputHeight × outputWidth` outputs and, per
    /// output, the flat index within the plane of the element that won: the first largest in scan
    /// order (rows, then columns), a NaN taking over from anything, the last NaN when there are
    /// several (ATen's `val > maxval || isnan(val)`); a window of −inf keeps its first tap.
    /// Windows lie at least partly inside the plane (`PoolGeometry.outputLength` sees to it).
    @inlinable @inline(__always)
    public static func withIndices(_ src: UnsafePointer<Float>, height h: Int, width w: Int,
                                   into dst: UnsafeMutablePointer<Float>, indices idx: UnsafeMutablePointer<Int32>,
                                   outputHeight oh: Int, outputWidth ow: Int,
                                   kernel k: Int, stride s: Int, padding pad: Int, dilation d: Int) {
        // outputs [inner0, inner1) of a row have every window column inside it, and (stride 2)
        // the 32-float loads of sixteen windows (16-float loads of eight) too
        let vectorised = s == 2 && d == 1
        let inner0 = min(ow, (pad + 1) / 2)
        let inner1 = max(inner0, min(ow, (w + pad - k - 1) / 2 + 1))
        // outputs [inner0, whole1) have every window column inside the row; the last eight of them
        // load from one column earlier and take the odd lanes, so their loads end at the window's end
        let whole1 = max(inner0, min(ow, (w + pad - k) / 2 + 1))
        for oy in 0 ..< oh {
            let y0 = oy * s - pad
            let k0 = y0 < 0 ? (-y0 + d - 1) / d : 0
            let k1 = min(k, (h - y0 + d - 1) / d)
            var first = 0
            if vectorised {
                let rows = (y0 + k0) ..< (y0 + k1)
                let out = dst + oy * ow, ix = idx + oy * ow
                var ox = inner0
                while ox + 16 <= inner1 {
                    windows16(src, width: w, rows: rows, firstColumn: 2 * ox - pad, kernel: k, into: out + ox, indices: ix + ox)
                    ox += 16
                }
                if ox + 8 <= inner1 {
                    windows8(src, width: w, rows: rows, firstColumn: 2 * ox - pad, kernel: k, into: out + ox, indices: ix + ox)
                    ox += 8
                }
                // the last eight windows again, overlapping ones already written (the same windows
                // give the same results), so that no inner output is left to the scalar loop
                if ox < whole1, whole1 - 8 >= inner0, 2 * (whole1 - 8) - pad >= 1 {
                    let last = whole1 - 8
                    windows8(src, width: w, rows: rows, firstColumn: 2 * last - pad, kernel: k, into: out + last, indices: ix + last,
                             oddLanes: true)
                    ox = whole1
                } else if ox < inner1 && inner1 - inner0 >= 8 {
                    let last = inner1 - 8
                    windows8(src, width: w, rows: rows, firstColumn: 2 * last - pad, kernel: k, into: out + last, indices: ix + last)
                    ox = inner1
                }
                // the scalar loop below does the rest of the row
                first = ox
            }
            for ox in 0 ..< ow where !(ox >= inner0 && ox < first) {
                let x0 = ox * s - pad
                let j0 = x0 < 0 ? (-x0 + d - 1) / d : 0
                let j1 = min(k, (w - x0 + d - 1) / d)
                var m = -Float.infinity
                var best = (y0 + k0 * d) * w + x0 + j0 * d
                var ki = k0
                while ki < k1 {
                    let rowStart = (y0 + ki * d) * w + x0
                    for kj in j0 ..< j1 {
                        let v = src[rowStart + kj * d]
                        // no early exit at a NaN: a later NaN takes the index, as in ATen
                        if v > m || v.isNaN {
                            m = v
                            best = rowStart + kj * d
                        }
                    }
                    ki += 1
                }
                dst[oy * ow + ox] = m
                idx[oy * ow + ox] = Int32(best)
            }
        }
    }

    /// Eight stride-2 windows whose columns `firstColumn + 2i ..< firstColumn + 2i + kernel` (and
    /// the 16-float loads reading them) lie inside the plane: their max and its index, scanned as
    /// `withIndices` scans (rows then columns, a larger element or a NaN takes over). With
    /// `oddLanes` each load starts one column earlier and the windows' taps are its odd lanes.
    @inlinable @inline(__always)
    static func windows8(_ src: UnsafePointer<Float>, width w: Int, rows: Range<Int>, firstColumn x0: Int, kernel k: Int,
                         into dst: UnsafeMutablePointer<Float>, indices idx: UnsafeMutablePointer<Int32>, oddLanes: Bool = false) {
        let lanes = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
        var m = SIMD8<Float>(repeating: -.infinity)
        var best = SIMD8<Int32>(repeating: Int32(rows.lowerBound * w + x0)) &+ lanes
        for r in rows {
            let rowStart = r * w + x0
            for kj in 0 ..< k {
                let v = oddLanes ? UnsafeRawPointer(src + rowStart + kj - 1).loadUnaligned(as: SIMD16<Float>.self).oddHalf
                                 : UnsafeRawPointer(src + rowStart + kj).loadUnaligned(as: SIMD16<Float>.self).evenHalf
                let wins = (v .> m) .| (v .!= v)
                m.replace(with: v, where: wins)
                best.replace(with: SIMD8<Int32>(repeating: Int32(rowStart + kj)) &+ lanes, where: wins)
            }
        }
        UnsafeMutableRawPointer(dst).storeBytes(of: m, as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(idx).storeBytes(of: best, as: SIMD8<Int32>.self)
    }

    /// `windows8` for sixteen windows (32-float loads): one AVX-512 register per row of results.
    @inlinable @inline(__always)
    static func windows16(_ src: UnsafePointer<Float>, width w: Int, rows: Range<Int>, firstColumn x0: Int, kernel k: Int,
                          into dst: UnsafeMutablePointer<Float>, indices idx: UnsafeMutablePointer<Int32>) {
        let lanes = SIMD16<Int32>(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
        var m = SIMD16<Float>(repeating: -.infinity)
        var best = SIMD16<Int32>(repeating: Int32(rows.lowerBound * w + x0)) &+ lanes
        for r in rows {
            let rowStart = r * w + x0
            for kj in 0 ..< k {
                let v = UnsafeRawPointer(src + rowStart + kj).loadUnaligned(as: SIMD32<Float>.self).evenHalf
                let wins = (v .> m) .| (v .!= v)
                m.replace(with: v, where: wins)
                best.replace(with: SIMD16<Int32>(repeating: Int32(rowStart + kj)) &+ lanes, where: wins)
            }
        }
        UnsafeMutableRawPointer(dst).storeBytes(of: m, as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(idx).storeBytes(of: best, as: SIMD16<Int32>.self)
    }

    /// `withIndices` compiled for AVX-512.
    public static func withIndicesAVX512(_ src: UnsafePointer<Float>, height h: Int, width w: Int,
                                         into dst: UnsafeMutablePointer<Float>, indices idx: UnsafeMutablePointer<Int32>,
                                         outputHeight oh: Int, outputWidth ow: Int,
                                         kernel k: Int, stride s: Int, padding pad: Int, dilation d: Int) {
        withIndices(src, height: h, width: w, into: dst, indices: idx, outputHeight: oh, outputWidth: ow,
                    kernel: k, stride: s, padding: pad, dilation: d)
    }
}
