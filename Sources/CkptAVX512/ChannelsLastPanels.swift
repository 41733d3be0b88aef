// N images, C channels, H rows, W columns (NCHW); channels-last (NHWC) where said.

/// The unfolded input of a convolution's weight gradient as `PackedGemm.multiplyAdd`'s panels of
/// `B`, gathered from a zero-padded channels-last copy of the input instead of transposed from an
/// im2col: with the matrix's rows taken tap by tap (`r = (i·kW + j)·C_in/g + c`), row `r` of
/// pixel `(y, x)` is channel `c` of padded pixel `(y·s_h + i·d_h, x·s_w + j·d_w)`, so the 48 rows
/// of a panel are at most a few runs of adjacent floats: one vector load and store per 16, no
/// transposes, no padding tests. The weight gradient comes out in that tap-major column order.
public enum ChannelsLastPanels {
    typealias V = SIMD16<Float>

    /// Floats `pad` makes: `N × (H + 2p_h) × (W + 2p_w) × C`.
    public static func paddedCount(images n: Int, channels c: Int, height h: Int, width w: Int, padding: (Int, Int)) -> Int {
        n * (h + 2 * padding.0) * (w + 2 * padding.1) * c
    }

    /// Images `images` of the NCHW `input` into `out` channels-last and zero-padded: channel `c`
    /// of pixel `(y, x)` of image `n` at `((n·H_p + y + p_h)·W_p + x + p_w)·C + c`, with
    /// `H_p = H + 2p_h`, `W_p = W + 2p_w`; the border is zero. Sixteen channels by sixteen pixels
    /// of a plane (numbered through the plane, so rows of any width fill whole vectors) per
    /// in-register transpose; ragged channel and pixel tails element by element.
    public static func pad(input: UnsafePointer<Float>, channels c: Int, height h: Int, width w: Int, padding: (Int, Int),
                           images: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let (ph, pw) = padding
        let (hp, wp) = (h + 2 * ph, w + 2 * pw)
        let plane = h * w
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 16) { placeBuffer in
            guard let places = placeBuffer.baseAddress else { return }
            for img in images {
                let src = input + img * c * plane
                let dst = out + img * hp * wp * c
                // the border: whole rows above and below, the columns left and right of each row
                dst.update(repeating: 0, count: ph * wp * c)
                (dst + (ph + h) * wp * c).update(repeating: 0, count: ph * wp * c)
                if pw > 0 {
                    for y in 0 ..< h {
                        let row = dst + (ph + y) * wp * c
                        row.update(repeating: 0, count: pw * c)
                        (row + (pw + w) * c).update(repeating: 0, count: pw * c)
                    }
                }
                @inline(__always) func at(_ q: Int) -> UnsafeMutablePointer<Float> {
                    dst + ((q / w + ph) * wp + q % w + pw) * c
                }
                // sixteen pixels at a time through every block of sixteen channels, so the pixels'
                // channels-last lines are finished while they are in L1
                let fullChannels = c / 16 * 16
                var q = 0
                var (y, x) = (0, 0)
                while q + 16 <= plane {
                    // each of the sixteen pixels' place, stepped without a division
                    for k in 0 ..< 16 {
                        places[k] = ((y + ph) * wp + x + pw) * c
                        x += 1
                        if x == w { x = 0; y += 1 }
                    }
                    var c0 = 0
                    while c0 < fullChannels {
                        @inline(__always) func row(_ s: Int) -> V { UnsafeRawPointer(src + (c0 + s) * plane + q).loadUnaligned(as: V.self) }
                        // column k: pixel q + k, its sixteen channels in order
                        @inline(__always) func put(_ v: V, _ k: Int) {
                            UnsafeMutableRawPointer(dst + places[k] + c0).storeBytes(of: v, as: V.self)
                        }
                        TransposedPanels.transpose16(row, put)
                        c0 += 16
                    }
                    q += 16
                }
                // the plane's last pixels, all channels; the ragged channels of the others
                for r in q ..< plane {
                    let d = at(r)
                    for ch in 0 ..< fullChannels { d[ch] = src[ch * plane + r] }
                }
                if fullChannels < c {
                    for r in 0 ..< plane {
                        let d = at(r)
                        for ch in fullChannels ..< c { d[ch] = src[ch * plane + r] }
                    }
                }
            }
        }
    }

    /// Rows `matrixRows` (tap-major: `r = (i·kW + j)·channels + c`) of the weight gradient's
    /// unfolded input for the output pixels `pixels` (numbered through the batch), as panels of `B`
    /// in `TransposedPanels.unfold`'s layout: `B[j, r − r₀]` at `((r − r₀) / 48)·pixels.count·48 +
    /// j·48 + (r − r₀) % 48`, columns past the last row in the last panel zero. `padded` is `pad`'s
    /// output, offset to the group's first channel; `totalChannels` is its pixel stride.
    public static func gather(
        padded: UnsafePointer<Float>, totalChannels ct: Int, channels c: Int, paddedHeight hp: Int, paddedWidth wp: Int,
        kernel: (Int, Int), stride: (Int, Int), dilation: (Int, Int), outputHeight oh: Int, outputWidth ow: Int,
        pixels: Range<Int>, matrixRows: Range<Int>, into b: UnsafeMutablePointer<Float>
    ) {
        let depth = pixels.count
        let kw = kernel.1
        let (sh, sw) = stride, (dh, dw) = dilation
        let plane = oh * ow
        // one panel's columns as runs of adjacent floats: (column, offset from the pixel's corner, count)
        withUnsafeTemporaryAllocation(of: (Int, Int, Int).self, capacity: 48) { runBuffer in
            guard let runs = runBuffer.baseAddress else { return }
            var r0 = matrixRows.lowerBound
            while r0 < matrixRows.upperBound {
                let r1 = min(r0 + 48, matrixRows.upperBound)
                var runCount = 0
                var r = r0
                while r < r1 {
                    let tap = r / c, ch = r % c
                    let count = min(c - ch, r1 - r)
                    runs[runCount] = (r - r0, ((tap / kw) * dh * wp + (tap % kw) * dw) * ct + ch, count)
                    runCount += 1
                    r += count
                }
                let width = r1 - r0
                let panel = b + (r0 - matrixRows.lowerBound) / 48 * depth * 48
                // runs that are whole vectors (channels and the range's start multiples of 16, as in
                // resnet's and VGG's layers): three loads and stores per pixel, no branches
                let vectors = width % 16 == 0 && (0 ..< runCount).allSatisfy { runs[$0].0 % 16 == 0 && runs[$0].2 % 16 == 0 }
                var vectorOffsets = (0, 0, 0)
                if vectors {
                    var offsets = [0, 0, 0]
                    for k in 0 ..< runCount {
                        let (column, offset, count) = runs[k]
                        for v in 0 ..< count / 16 { offsets[column / 16 + v] = offset + 16 * v }
                    }
                    vectorOffsets = (offsets[0], offsets[1], offsets[2])
                }
                var img = pixels.lowerBound / plane
                var y = (pixels.lowerBound % plane) / ow, x = pixels.lowerBound % ow
                for jj in 0 ..< depth {
                    let corner = padded + ((img * hp + y * sh) * wp + x * sw) * ct
                    let dst = panel + jj * 48
                    if vectors {
                        @inline(__always) func move(_ offset: Int, _ v: Int) {
                            UnsafeMutableRawPointer(dst + 16 * v).storeBytes(
                                of: UnsafeRawPointer(corner + offset).loadUnaligned(as: V.self), as: V.self)
                        }
                        move(vectorOffsets.0, 0)
                        if width > 16 { move(vectorOffsets.1, 1) }
                        if width > 32 { move(vectorOffsets.2, 2) }
                    } else {
                        for k in 0 ..< runCount {
                            let (column, offset, count) = runs[k]
                            PanelUnfold.copy(corner + offset, dst + column, count)
                        }
                    }
                    if width < 48 { (dst + width).update(repeating: 0, count: 48 - width) }
                    x += 1
                    if x == ow {
                        x = 0
                        y += 1
                        if y == oh { y = 0; img += 1 }
                    }
                }
                r0 = r1
            }
        }
    }
}
