// PIL's rules for turning PNG samples into "L" or "RGB" pixels (PngImagePlugin's `_MODES`, the
// unpackers of Unpack.c and the converters of Convert.c), written out per colour type.

extension PNGSamples {
    /// PIL's mode for this colour type and depth (`PngImagePlugin._MODES`).
    var pilMode: String {
        switch (colorType, bitDepth) {
        case (0, 1): return "1"
        case (0, 16): return "I;16"
        case (0, _): return "L"
        case (2, _): return "RGB"
        case (3, _): return "P"
        case (4, 8): return "LA"
        case (4, _): return "RGBA" // PIL opens 16-bit grey + alpha as RGBA ("LA;16B")
        default: return "RGBA"
        }
    }

    /// The pixels as PIL's `convert("RGB")` gives them, in 1 channel when they are grey.
    ///
    /// - grey below 8 bits is scaled to 0…255 (`L;2` × 0x55, `L;4` × 0x11, mode `"1"` × 255);
    /// - 16-bit grey (`"I;16"`) is clipped, not scaled: a value above 255 becomes 255
    ///   (`I16_RGB`), as PIL does;
    /// - other 16-bit samples keep their high byte (`RGB;16B`, `RGBA;16B`, `LA;16B`): truncated,
    ///   not rounded;
    /// - alpha is dropped, not composited (`rgba2rgb`, `la2rgb`); tRNS only marks transparency;
    /// - palette indices beyond the PLTE entries are black (PIL's palette is zero-filled).
    func image() -> RasterImage {
        let n = width * height
        switch colorType {
        case 0, 4:
            let step = colorType == 4 ? 2 : 1
            var out = [UInt8](repeating: 0, count: n)
            forEachRow(into: &out, channelsOut: 1) { row, o in
                for x in 0 ..< width { o[x] = grey(row, x * step) }
            }
            return RasterImage(uncheckedWidth: width, height: height, channels: 1, pixels: out)
        case 3:
            var out = [UInt8](repeating: 0, count: n * 3)
            let table = paletteTable()
            forEachRow(into: &out, channelsOut: 3) { row, o in
                for x in 0 ..< width {
                    let i = Int(row[x]) * 3
                    o[3 * x] = table[i]
                    o[3 * x + 1] = table[i + 1]
                    o[3 * x + 2] = table[i + 2]
                }
            }
            return RasterImage(uncheckedWidth: width, height: height, channels: 3, pixels: out)
        default:
            let samplesPerPixel = colorType == 6 ? 4 : 3
            let stride = bitDepth == 16 ? 2 : 1
            var out = [UInt8](repeating: 0, count: n * 3)
            forEachRow(into: &out, channelsOut: 3) { row, o in
                for x in 0 ..< width {
                    let p = x * samplesPerPixel * stride
                    o[3 * x] = row[p]
                    o[3 * x + 1] = row[p + stride]
                    o[3 * x + 2] = row[p + 2 * stride]
                }
            }
            return RasterImage(uncheckedWidth: width, height: height, channels: 3, pixels: out)
        }
    }

    /// The class index of every pixel, as `np.array(Image.open(mask))` gives it for the modes a
    /// mask may have: palette indices for `"P"` (the colours are ignored), grey values for `"L"`
    /// (below 8 bits scaled as PIL scales them). `nil` for other colour types and 16-bit grey.
    func labels() -> [UInt8]? {
        guard colorType == 3 || (colorType == 0 && bitDepth <= 8) else { return nil }
        var out = [UInt8](repeating: 0, count: width * height)
        forEachRow(into: &out, channelsOut: 1) { row, o in
            for x in 0 ..< width { o[x] = colorType == 3 ? row[x] : grey(row, x) }
        }
        return out
    }

    /// One grey sample at byte offset `i` of a row (sample index for depths below 16).
    private func grey(_ row: UnsafeBufferPointer<UInt8>, _ i: Int) -> UInt8 {
        switch bitDepth {
        case 1: return row[i] == 0 ? 0 : 255
        case 2: return row[i] &* 0x55
        case 4: return row[i] &* 0x11
        case 16:
            // "I;16" clips (I16_RGB); "LA;16B" keeps the high byte
            if colorType == 0 { return row[2 * i] == 0 ? row[2 * i + 1] : 255 }
            return row[2 * i]
        default: return row[i]
        }
    }

    /// The palette as 256 RGB entries, the ones PLTE does not give black.
    private func paletteTable() -> [UInt8] {
        var table = [UInt8](repeating: 0, count: 256 * 3)
        for i in 0 ..< min(palette.count, table.count) { table[i] = palette[i] }
        return table
    }

    /// Calls `body` with each stored row and the matching row of `out`.
    private func forEachRow(into out: inout [UInt8], channelsOut: Int,
                            _ body: (UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>) -> Void) {
        samples.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                guard let sBase = s.baseAddress, let oBase = o.baseAddress else { return }
                for y in 0 ..< height {
                    let row = UnsafeBufferPointer(start: sBase + y * rowBytes, count: rowBytes)
                    let outRow = UnsafeMutableBufferPointer(start: oBase + y * width * channelsOut, count: width * channelsOut)
                    body(row, outRow)
                }
            }
        }
    }
}
