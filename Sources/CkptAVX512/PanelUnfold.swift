// N images, C channels, H rows, W columns (NCHW).

/// The im2col unfold of the implicit-GEMM convolution, written straight into `PackedGemm`'s panel
/// layout, with vector copies (runs are short: at most one output row inside one 48-column panel).
public enum PanelUnfold {
    typealias V = SIMD16<Float>

    /// The im2col matrix of a convolution for the output pixels `pixels` (numbered through the batch: pixel `i` is
    /// pixel `i % (H_out·W_out)` of image `i / (H_out·W_out)`) as GEMM panels of `panelWidth`
    /// columns: element `(r, j)` (`j` counted from the range's start) at
    /// `(j / panelWidth)·rows·panelWidth + r·panelWidth + j % panelWidth`, the layout `PackedGemm`
    /// multiplies without another copy. `input` points at the group's first channel of image 0;
    /// images lie `imageStride` floats apart. Lanes past the range's end are left as they are.
    /// `matrixRows` limits the unfold to those rows of the matrix (all by default); row `r` then
    /// lies at `r − matrixRows.lowerBound`, and panels `panelRows` rows apart (default: as many as
    /// it unfolds).
    public static func unfold(
        input: UnsafePointer<Float>, imageStride: Int, channels: Int, height h: Int, width w: Int,
        kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int),
        outputHeight oh: Int, outputWidth ow: Int, pixels: Range<Int>, matrixRows: Range<Int>? = nil,
        panelRows: Int? = nil, into panels: UnsafeMutablePointer<Float>
    ) {
        let panelWidth = PackedGemm.panelWidth
        let (kh, kw) = kernel, (sh, sw) = stride, (ph, pw) = padding, (dh, dw) = dilation
        let rowRange = matrixRows ?? 0 ..< channels * kh * kw
        let panelStride = (panelRows ?? rowRange.count) * panelWidth
        let plane = oh * ow
        // The runs of pixels lying in one image, one output row and one panel are the same for
        // every matrix row: find them once.
        struct Run { var destination: Int, count: Int, image: Int, y: Int, x: Int }
        withUnsafeTemporaryAllocation(of: Run.self, capacity: max(1, pixels.count)) { buffer in
            guard let runs = buffer.baseAddress else { return }
            var runCount = 0
            var i = pixels.lowerBound
            while i < pixels.upperBound {
                let img = i / plane, q = i % plane
                let y = q / ow, x = q % ow
                let local = i - pixels.lowerBound
                let lane = local % panelWidth
                let count = min(panelWidth - lane, ow - x, pixels.upperBound - i)
                (runs + runCount).initialize(to: Run(destination: (local / panelWidth) * panelStride + lane, count: count,
                                                     image: img * imageStride, y: y, x: x))
                runCount += 1
                i += count
            }
            // (channel, kernel row, kernel column) of row r, stepped without a division per row
            var c = rowRange.lowerBound / (kh * kw)
            var ki = (rowRange.lowerBound / kw) % kh
            var kj = rowRange.lowerBound % kw
            for r in rowRange {
                defer {
                    kj &+= 1
                    if kj == kw {
                        kj = 0
                        ki &+= 1
                        if ki == kh { ki = 0; c &+= 1 }
                    }
                }
                let x0 = kj &* dw &- pw
                let rowBase = panels + (r &- rowRange.lowerBound) &* panelWidth
                for run in UnsafeBufferPointer(start: runs, count: runCount) {
                    let dst = rowBase + run.destination
                    let count = run.count
                    let iy = run.y &* sh &- ph &+ ki &* dh
                    if iy < 0 || iy >= h {
                        zero(dst, count)
                        continue
                    }
                    let srow = input + (run.image &+ (c &* h &+ iy) &* w)
                    if sw == 1 {
                        // columns ix = x0 + x ..< x0 + x + count: zero outside the image, copied inside
                        let start = x0 &+ run.x
                        let lo = max(0, min(count, -start))
                        let hi = max(lo, min(count, w &- start))
                        if lo > 0 { zero(dst, lo) }
                        if hi > lo { copy(srow + (start &+ lo), dst + lo, hi &- lo) }
                        if count > hi { zero(dst + hi, count &- hi) }
                    } else {
                        var ix = run.x &* sw &+ x0
                        var k = 0
                        if sw == 2 {
                            // the left padding (a row's first run starts there), then sixteen,
                            // eight and four columns 2 apart as the even lanes of one load twice
                            // as wide: the short runs of 7×7 and 14×14 planes are vector copies too
                            while k < count && ix < 0 {
                                dst[k] = 0
                                ix &+= 2
                                k &+= 1
                            }
                            while k &+ 16 <= count && ix &+ 32 <= w {
                                let v = UnsafeRawPointer(srow + ix).loadUnaligned(as: SIMD32<Float>.self)
                                UnsafeMutableRawPointer(dst + k).storeBytes(of: v.evenHalf, as: V.self)
                                k &+= 16
                                ix &+= 32
                            }
                            if k &+ 8 <= count && ix &+ 16 <= w {
                                let v = UnsafeRawPointer(srow + ix).loadUnaligned(as: V.self)
                                UnsafeMutableRawPointer(dst + k).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
                                k &+= 8
                                ix &+= 16
                            }
                            if k &+ 4 <= count && ix &+ 8 <= w {
                                let v = UnsafeRawPointer(srow + ix).loadUnaligned(as: SIMD8<Float>.self)
                                UnsafeMutableRawPointer(dst + k).storeBytes(of: v.evenHalf, as: SIMD4<Float>.self)
                                k &+= 4
                                ix &+= 8
                            }
                        }
                        while k < count {
                            dst[k] = (ix >= 0 && ix < w) ? srow[ix] : 0
                            ix &+= sw
                            k &+= 1
                        }
                    }
                }
            }
        }
    }

    /// `dst[t] = src[stride·t]` for `t < count`, reading no further than `src[available − 1]`
    /// (`stride·(count − 1) < available`): one row of a phase of a strided convolution's input
    /// (every `stride`-th column), stride 2 as the even lanes of loads twice as wide.
    public static func gather(_ src: UnsafePointer<Float>, stride s: Int, count: Int, available: Int,
                              into dst: UnsafeMutablePointer<Float>) {
        var t = 0
        if s == 2 {
            while t &+ 16 <= count && 2 &* t &+ 32 <= available {
                let v = UnsafeRawPointer(src + 2 &* t).loadUnaligned(as: SIMD32<Float>.self)
                UnsafeMutableRawPointer(dst + t).storeBytes(of: v.evenHalf, as: V.self)
                t &+= 16
            }
            if t &+ 8 <= count && 2 &* t &+ 16 <= available {
                let v = UnsafeRawPointer(src + 2 &* t).loadUnaligned(as: V.self)
                UnsafeMutableRawPointer(dst + t).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
                t &+= 8
            }
        }
        while t < count {
            dst[t] = src[s &* t]
            t &+= 1
        }
    }

    /// `count` (≤ 48) floats from `src` to `dst`: 16-, 8- and 4-float moves, then at most 3 singles.
    @inline(__always)
    static func copy(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        var k = 0
        while k &+ 16 <= count {
            UnsafeMutableRawPointer(dst + k).storeBytes(of: UnsafeRawPointer(src + k).loadUnaligned(as: V.self), as: V.self)
            k &+= 16
        }
        if k &+ 8 <= count {
            UnsafeMutableRawPointer(dst + k).storeBytes(of: UnsafeRawPointer(src + k).loadUnaligned(as: SIMD8<Float>.self),
                                                        as: SIMD8<Float>.self)
            k &+= 8
        }
        if k &+ 4 <= count {
            UnsafeMutableRawPointer(dst + k).storeBytes(of: UnsafeRawPointer(src + k).loadUnaligned(as: SIMD4<Float>.self),
                                                        as: SIMD4<Float>.self)
            k &+= 4
        }
        while k < count { dst[k] = src[k]; k &+= 1 }
    }

    /// `count` zeros at `dst`, in the same steps as `copy`.
    @inline(__always)
    static func zero(_ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        var k = 0
        while k &+ 16 <= count {
            UnsafeMutableRawPointer(dst + k).storeBytes(of: V(), as: V.self)
            k &+= 16
        }
        if k &+ 8 <= count {
            UnsafeMutableRawPointer(dst + k).storeBytes(of: SIMD8<Float>(), as: SIMD8<Float>.self)
            k &+= 8
        }
        if k &+ 4 <= count {
            UnsafeMutableRawPointer(dst + k).storeBytes(of: SIMD4<Float>(), as: SIMD4<Float>.self)
            k &+= 4
        }
        while k < count { dst[k] = 0; k &+= 1 }
    }
}
