// N images, C channels, H rows, W columns (NCHW).

/// Unfolding of image patches into matrix columns and its adjoint, the core of convolution by GEMM.
///
/// The column matrix of one image and one group has `C·kH·kW` rows (channel-major, then kernel
/// row, then kernel column: the order of a flattened Conv2d weight) and `H_out·W_out` columns.
/// PyTorch counterpart: `at::native::im2col` / `col2im` (`torch.nn.functional.unfold` / `fold`).
enum Im2col {
    /// Writes the column matrix of `channels` planes of `input` (each `h×w`) into `columns`.
    ///
    /// Only output rows `rows` are unfolded (all by default), so a convolution can walk the image
    /// in bands whose column matrix stays in cache; the matrix then has `rows.count·W_out` columns.
    /// `rowStride` (default: that width) spaces matrix rows apart, so several images can be
    /// unfolded side by side into one matrix.
    static func unfold(
        input: UnsafePointer<Float>, channels: Int, height h: Int, width w: Int,
        geometry g: Conv2dGeometry, outputHeight oh: Int, outputWidth ow: Int,
        rows outputRows: Range<Int>? = nil, rowStride: Int? = nil, threaded: Bool = true,
        into columns: UnsafeMutablePointer<Float>
    ) {
        let band = outputRows ?? 0 ..< oh
        let kh = g.kernelSize.height, kw = g.kernelSize.width
        let sh = g.stride.height, sw = g.stride.width
        let ph = g.padding.height, pw = g.padding.width
        let dh = g.dilation.height, dw = g.dilation.width
        let rows = channels * kh * kw
        let plane = band.count * ow
        parallelFor(rows, minimumWork: threaded ? 64 : Int.max) { r in
            let c = r / (kh * kw)
            let ki = (r / kw) % kh
            let kj = r % kw
            let src = input + c * h * w
            // rowStride > plane leaves room for other images' columns beside this one's
            let dst = columns + r * (rowStride ?? plane)
            for y in band {
                let iy = y * sh - ph + ki * dh
                let row = dst + (y - band.lowerBound) * ow
                if iy < 0 || iy >= h {
                    row.update(repeating: 0, count: ow)
                    continue
                }
                let srow = src + iy * w
                let x0 = kj * dw - pw
                if sw == 1 {
                    // contiguous run: zero the left and right pads, copy the middle
                    var x = 0
                    while x < ow && x0 + x < 0 { row[x] = 0; x += 1 }
                    let end = min(ow, w - x0)
                    if end > x {
                        (row + x).update(from: srow + (x0 + x), count: end - x)
                        x = end
                    }
                    while x < ow { row[x] = 0; x += 1 }
                } else {
                    for x in 0 ..< ow {
                        let ix = x * sw + x0
                        row[x] = (ix >= 0 && ix < w) ? srow[ix] : 0
                    }
                }
            }
        }
    }

    /// Adds the column matrix back onto `channels` planes of `output` (each `h×w`), summing
    /// overlapping taps: the adjoint of `unfold`, used by transposed convolution and by the input
    /// gradient of convolution. With `rows`, the matrix holds only those column-grid rows
    /// (`rows.count·ow` columns), as `unfold` writes a band.
    static func fold(
        columns: UnsafePointer<Float>, channels: Int, height h: Int, width w: Int,
        geometry g: Conv2dGeometry, columnHeight oh: Int, columnWidth ow: Int,
        rows bandRows: Range<Int>? = nil, threaded: Bool = true,
        into output: UnsafeMutablePointer<Float>
    ) {
        let band = bandRows ?? 0 ..< oh
        let kh = g.kernelSize.height, kw = g.kernelSize.width
        let sh = g.stride.height, sw = g.stride.width
        let ph = g.padding.height, pw = g.padding.width
        let dh = g.dilation.height, dw = g.dilation.width
        let plane = band.count * ow
        // one channel per task: taps of a channel only ever land in that channel's plane
        parallelFor(channels, minimumWork: threaded ? 2 : Int.max) { c in
            let dst = output + c * h * w
            for ki in 0 ..< kh {
                for kj in 0 ..< kw {
                    let src = columns + ((c * kh + ki) * kw + kj) * plane
                    let x0 = kj * dw - pw
                    // columns x whose tap lands inside the row: lo ..< hi
                    let lo = x0 >= 0 ? 0 : (-x0 + sw - 1) / sw
                    let hi = max(lo, min(ow, w - x0 <= 0 ? 0 : (w - x0 + sw - 1) / sw))
                    for y in band {
                        let iy = y * sh - ph + ki * dh
                        if iy < 0 || iy >= h { continue }
                        let base = iy * w + x0  // ≥ 0 for every x in lo..<hi
                        let srow = src + (y - band.lowerBound) * ow
                        if sw == 1 {
                            for x in lo ..< hi { dst[base + x] += srow[x] }
                        } else {
                            for x in lo ..< hi { dst[base + x * sw] += srow[x] }
                        }
                    }
                }
            }
        }
    }
}
