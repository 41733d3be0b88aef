import Foundation

// Pillow's `ImagingResample` (libImaging/Resample.c) for the bilinear filter on 8-bit images,
// written out again so the bytes are equal: a separable convolution in two passes (horizontal
// first, unless only the height shrinks: Pillow 13's order), whose triangle filter widens by the downscale factor (that is the antialiasing), with weights
// normalised per output pixel and rounded to 22 fractional bits (`PRECISION_BITS = 32 - 8 - 2`),
// sums started at one half and clipped to 0…255 after each pass.

/// The taps of one resampling pass: for output pixel `i`, input pixels
/// `first[i] ..< first[i] + count[i]` weighted by `weights[i * taps ..< i * taps + count[i]]`.
struct ResampleTaps {
    var first: [Int]
    var count: [Int]
    var taps: Int
    /// Fixed-point weights, 22 fractional bits.
    var weights: [Int32]

    static let precisionBits = 22

    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter (support 1),
    /// mapping `outSize` pixels onto the input interval `in0 ..< in1` (floats, as Pillow's box).
    init(inSize: Int, in0: Float = 0, in1: Float, outSize: Int) {
        // (in1 - in0) is a float difference in Pillow, then widened
        let scale = Double(in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale
        let taps = Int(support.rounded(.up)) * 2 + 1
        let inverse = 1.0 / filterScale
        var first = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * taps)
        var k = [Double](repeating: 0, count: taps)
        for xx in 0 ..< outSize {
            let center = Double(in0) + (Double(xx) + 0.5) * scale
            // C's (int) cast truncates toward zero, as Int(_:) does
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var total = 0.0
            for x in 0 ..< xmax {
                let w = Self.triangle((Double(x + xmin) - center + 0.5) * inverse)
                k[x] = w
                total += w
            }
            for x in 0 ..< xmax {
                let w = total != 0 ? k[x] / total : k[x]
                let fixed = w < 0 ? -0.5 + w * Double(1 << Self.precisionBits) : 0.5 + w * Double(1 << Self.precisionBits)
                weights[xx * taps + x] = Int32(fixed.rounded(.towardZero))
            }
            first[xx] = xmin
            count[xx] = max(xmax, 0)
        }
        self.first = first
        self.count = count
        self.taps = taps
        self.weights = weights
    }

    /// Pillow's `bilinear_filter`.
    static func triangle(_ x: Double) -> Double {
        let a = x < 0 ? -x : x
        return a < 1 ? 1 - a : 0
    }
}

/// Clips a fixed-point sum to a byte as Pillow's `clip8` does (arithmetic shift, then 0…255).
@inline(__always)
private func clip8(_ sum: Int32) -> UInt8 {
    let v = sum >> Int32(ResampleTaps.precisionBits)
    return v <= 0 ? 0 : (v >= 255 ? 255 : UInt8(truncatingIfNeeded: v))
}

extension RasterImage {
    /// This image resized to `width` × `height` with Pillow's antialiased bilinear filter.
    /// - Throws: `DataError.invalidArgument` when a size is not positive or too large.
    /// PIL counterpart: `image.resize((width, height), Image.BILINEAR)` (what torchvision's
    /// `Resize` calls on a PIL image, `antialias=True`).
    public func resized(width newWidth: Int, height newHeight: Int) throws -> RasterImage {
        guard newWidth > 0, newHeight > 0, newWidth <= maximumImagePixels, newHeight <= maximumImagePixels,
              newWidth * newHeight <= maximumImagePixels else {
            throw DataError(.invalidArgument, file: "<image>", "resize to \(newWidth)x\(newHeight): sizes must be positive and at most \(maximumImagePixels) pixels")
        }
        if newWidth == width, newHeight == height { return self }
        let needHorizontal = newWidth != width
        let needVertical = newHeight != height
        var vertical = ResampleTaps(inSize: height, in1: Float(height), outSize: newHeight)
        let horizontal = ResampleTaps(inSize: width, in1: Float(width), outSize: newWidth)
        // Pillow 13 runs the vertical pass first when only the height shrinks (the horizontal
        // pass then has fewer rows); the order changes the intermediate rounding, so it is kept
        let horizontalFirst = !(newWidth >= width && newHeight < height)
        if horizontalFirst {
            var source = self
            if needHorizontal {
                // only the input rows the vertical pass reads go through the horizontal pass
                let firstRow = vertical.first[0]
                let lastRow = vertical.first[newHeight - 1] + vertical.count[newHeight - 1]
                source = horizontalPass(horizontal, rows: firstRow ..< lastRow, outWidth: newWidth)
                for i in 0 ..< newHeight { vertical.first[i] -= firstRow }
            }
            return needVertical ? source.verticalPass(vertical, outHeight: newHeight) : source
        }
        let source = needVertical ? verticalPass(vertical, outHeight: newHeight) : self
        return needHorizontal ? source.horizontalPass(horizontal, rows: 0 ..< newHeight, outWidth: newWidth) : source
    }

    /// Pillow's `ImagingResampleHorizontal_8bpc` over `rows`.
    ///
    /// Integer sums do not depend on their order, so the pass runs on the transposed rows: each
    /// output column is then a weighted sum of whole input columns, contiguous and vectorised
    /// like the vertical pass, instead of a gather per output pixel.
    private func horizontalPass(_ taps: ResampleTaps, rows: Range<Int>, outWidth: Int) -> RasterImage {
        let c = channels, inWidth = width
        let columnLength = rows.count * c
        let half = Int32(1) << Int32(ResampleTaps.precisionBits - 1)
        // columns[x] = the pixels of column x of `rows`, top to bottom
        let columns = [UInt8](unsafeUninitializedCapacity: inWidth * columnLength) { buffer, count in
            count = buffer.count
            pixels.withUnsafeBufferPointer { p in
                guard let pBase = p.baseAddress, let cBase = buffer.baseAddress else { return }
                for (r, y) in rows.enumerated() {
                    let from = pBase + y * inWidth * c
                    let to = cBase + r * c
                    if c == 3 {
                        for x in 0 ..< inWidth {
                            (to + x * columnLength).update(from: from + 3 * x, count: 3)
                        }
                    } else {
                        for x in 0 ..< inWidth { to[x * columnLength] = from[x] }
                    }
                }
            }
        }
        var sums = [Int32](repeating: 0, count: columnLength)
        let clipped = UnsafeMutablePointer<UInt8>.allocate(capacity: max(columnLength, 1))
        defer { clipped.deallocate() }
        let out = [UInt8](unsafeUninitializedCapacity: outWidth * columnLength) { outBuffer, count in
            count = outBuffer.count
            columns.withUnsafeBufferPointer { cols in
                sums.withUnsafeMutableBufferPointer { sumBuffer in
                    taps.weights.withUnsafeBufferPointer { k in
                        guard let colBase = cols.baseAddress, let outBase = outBuffer.baseAddress,
                              let s = sumBuffer.baseAddress, let kBase = k.baseAddress else { return }
                        let rowLength = outWidth * c
                        for xx in 0 ..< outWidth {
                            s.update(repeating: half, count: columnLength)
                            let first = taps.first[xx]
                            for x in 0 ..< taps.count[xx] {
                                let w = kBase[xx * taps.taps + x]
                                let column = colBase + (first + x) * columnLength
                                for i in 0 ..< columnLength { s[i] &+= Int32(column[i]) &* w }
                            }
                            // clip the column, then put it back in rows: pixel xx of every row
                            for i in 0 ..< columnLength { clipped[i] = clip8(s[i]) }
                            let target = outBase + xx * c
                            if c == 3 {
                                for r in 0 ..< rows.count {
                                    (target + r * rowLength).update(from: clipped + 3 * r, count: 3)
                                }
                            } else {
                                for r in 0 ..< rows.count { target[r * rowLength] = clipped[r] }
                            }
                        }
                    }
                }
            }
        }
        return RasterImage(uncheckedWidth: outWidth, height: rows.count, channels: c, pixels: out)
    }

    /// Pillow's `ImagingResampleVertical_8bpc`: every output row a weighted sum of input rows.
    private func verticalPass(_ taps: ResampleTaps, outHeight: Int) -> RasterImage {
        let rowLength = width * channels
        var sums = [Int32](repeating: 0, count: rowLength)
        let half = Int32(1) << Int32(ResampleTaps.precisionBits - 1)
        let out = [UInt8](unsafeUninitializedCapacity: rowLength * outHeight) { outBuffer, count in
            count = outBuffer.count
            pixels.withUnsafeBufferPointer { inBuffer in
                sums.withUnsafeMutableBufferPointer { sumBuffer in
                    taps.weights.withUnsafeBufferPointer { k in
                        guard let inBase = inBuffer.baseAddress, let outBase = outBuffer.baseAddress,
                              let s = sumBuffer.baseAddress, let kBase = k.baseAddress else { return }
                        for yy in 0 ..< outHeight {
                            s.update(repeating: half, count: rowLength)
                            let ymin = taps.first[yy]
                            for y in 0 ..< taps.count[yy] {
                                let w = kBase[yy * taps.taps + y]
                                let line = inBase + (ymin + y) * rowLength
                                for i in 0 ..< rowLength { s[i] &+= Int32(line[i]) &* w }
                            }
                            let target = outBase + yy * rowLength
                            for i in 0 ..< rowLength { target[i] = clip8(s[i]) }
                        }
                    }
                }
            }
        }
        return RasterImage(uncheckedWidth: width, height: outHeight, channels: channels, pixels: out)
    }
}
