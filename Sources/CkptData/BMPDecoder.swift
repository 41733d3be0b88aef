/// Windows bitmaps (`BM`) decoded as PIL's `BmpImagePlugin` decodes them, so that
/// `convert("RGB")` gives PIL's pixels: OS/2 core and Windows info headers (12, 40 … 124 bytes),
/// 1-, 4- and 8-bit palettes, 16-bit 5-5-5 / 5-6-5 (each channel `v * 255 / max`, truncated),
/// 24-bit BGR, 32-bit BGRX and the bit-field layouts PIL supports (alpha dropped, as `convert`
/// drops it), bottom-up and top-down rows. RLE-compressed, JPEG- and PNG-in-BMP files are refused
/// in one line.
enum BMPDecoder {
    /// True when the first bytes are `BM` (PIL's `_accept`).
    static func accepts(_ raw: UnsafeRawBufferPointer) -> Bool {
        raw.count >= 2 && raw[0] == UInt8(ascii: "B") && raw[1] == UInt8(ascii: "M")
    }

    /// Decodes a BMP file.
    /// - Throws: `DataError` `.unsupported` (a compression or layout ckpt does not read),
    ///   `.corrupt` (a header PIL refuses), `.truncated`, `.limit`.
    static func decode(_ raw: UnsafeRawBufferPointer, file: String) throws -> DecodedImage {
        func u16(_ o: Int) throws -> Int {
            guard o >= 0, o + 2 <= raw.count else { throw DataError(.truncated, file: file, "bmp header ends at offset \(raw.count)") }
            return Int(raw[o]) | Int(raw[o + 1]) << 8
        }
        func u32(_ o: Int) throws -> Int {
            let low = try u16(o), high = try u16(o + 2)
            return low | high << 16
        }
        let dataOffset = try u32(10)
        let headerSize = try u32(14)
        var width: Int, height: Int, bits: Int, compression = 0, colors = 0, paletteEntry = 4
        var topDown = false
        var masks: [Int]?
        var cursor = 14 + headerSize
        switch headerSize {
        case 12:
            width = try u16(18)
            height = try u16(20)
            bits = try u16(24)
            paletteEntry = 3
        case 40, 52, 56, 64, 108, 124:
            width = try u32(18)
            topDown = try u16(22 + 2) >> 8 == 0xFF
            let storedHeight = try u32(22)
            height = topDown ? (1 << 32) - storedHeight : storedHeight
            bits = try u16(28)
            compression = try u32(30)
            colors = try u32(46)
            if compression == 3 {
                if headerSize >= 52 {
                    masks = try (0 ..< (headerSize >= 56 ? 4 : 3)).map { try u32(54 + 4 * $0) } + (headerSize >= 56 ? [] : [0])
                } else {
                    masks = try (0 ..< 3).map { try u32(cursor + 4 * $0) } + [0]
                    cursor += 12
                }
            }
        default:
            throw DataError(.unsupported, file: file, "bmp header of \(headerSize) bytes (PIL reads 12, 40, 52, 56, 64, 108 and 124)")
        }
        guard width > 0, height > 0, width <= maximumImagePixels / height else {
            throw DataError(width > 0 && height > 0 ? .limit : .corrupt, file: file, "bmp size \(width)x\(height)")
        }
        guard [1, 4, 8, 16, 24, 32].contains(bits) else { throw DataError(.unsupported, file: file, "bmp pixel depth \(bits)") }
        if colors == 0 { colors = 1 << min(bits, 30) }
        // 16-bit: shifts and maxima of blue, green, red; 32-bit: byte order of blue, green, red
        var fields16 = (0, 31, 5, 31, 10, 31)
        var order32 = (0, 1, 2)
        switch compression {
        case 0: break
        case 3:
            guard let m = masks else { throw DataError(.corrupt, file: file, "bmp bit fields missing") }
            let rgb = Array(m.prefix(3)), rgba = m
            switch (bits, rgb, rgba) {
            case (16, [0xF800, 0x7E0, 0x1F], _): fields16 = (0, 31, 5, 63, 11, 31)
            case (16, [0x7C00, 0x3E0, 0x1F], _): break
            case (24, [0xFF0000, 0xFF00, 0xFF], _): break
            case (32, _, [0xFF0000, 0xFF00, 0xFF, 0]), (32, _, [0xFF0000, 0xFF00, 0xFF, 0xFF00_0000]), (32, _, [0, 0, 0, 0]):
                order32 = (0, 1, 2)  // BGRX / BGRA
            case (32, _, [0xFF00_0000, 0xFF0000, 0xFF00, 0]), (32, _, [0xFF00_0000, 0xFF0000, 0xFF00, 0xFF]):
                order32 = (1, 2, 3)  // XBGR / ABGR
            case (32, _, [0xFF00_0000, 0xFF00, 0xFF, 0]):
                order32 = (0, 1, 3)  // BGXR
            case (32, _, [0xFF00_0000, 0xFF00, 0xFF, 0xFF0000]):
                order32 = (0, 1, 3)  // BGAR
            case (32, _, [0xFF, 0xFF00, 0xFF0000, 0xFF00_0000]):
                order32 = (2, 1, 0)  // RGBA
            default:
                throw DataError(.unsupported, file: file, "bmp bit fields layout \(m.map { String($0, radix: 16) }) at \(bits) bits")
            }
        case 1, 2:
            throw DataError(.unsupported, file: file, "run-length encoded bmp (RLE\(compression == 1 ? 8 : 4)): ckpt does not decode it")
        default:
            throw DataError(.unsupported, file: file, "bmp compression \(compression)")
        }
        var palette: [UInt8] = []
        var paletteEntries = 0
        if bits <= 8 {
            guard colors > 0, colors <= 65536 else { throw DataError(.corrupt, file: file, "bmp palette of \(colors) colours") }
            // RGB triples of every index a `bits`-bit sample can hold; entries the file does not hold
            // (a palette running past its end, as PIL's short read leaves it) are black
            palette = [UInt8](repeating: 0, count: 3 * max(colors, 1 << bits))
            let available = max(0, raw.count - cursor)
            if available < paletteEntry * colors, available % paletteEntry != 0 {
                throw DataError(.corrupt, file: file, "bmp palette cut off inside an entry (PIL: invalid palette size)")
            }
            paletteEntries = min(colors, available / paletteEntry)
            guard paletteEntries <= 256 else {
                throw DataError(.corrupt, file: file, "bmp palette of \(paletteEntries) entries (PIL: invalid palette size; at most 256)")
            }
            for i in 0 ..< paletteEntries {
                let e = cursor + i * paletteEntry
                (palette[3 * i], palette[3 * i + 1], palette[3 * i + 2]) = (raw[e + 2], raw[e + 1], raw[e])
            }
        }
        // PIL: a palette of grey levels 0, 1, 2 … (or black and white for two colours) opens as "L"
        // ("1") and its samples are read as levels, not looked up; PIL reads them as 8-bit ("L") or
        // 1-bit ("1") samples whatever the file's depth, which only those depths survive
        let grey = bits <= 8 && paletteEntries == colors && (0 ..< colors).allSatisfy { i in
            let v = UInt8(truncatingIfNeeded: colors == 2 ? i * 255 : i)
            return palette[3 * i] == v && palette[3 * i + 1] == v && palette[3 * i + 2] == v
        }
        if grey, bits != (colors <= 2 ? 1 : 8) {
            throw DataError(.unsupported, file: file, "a \(bits)-bit bmp whose \(colors)-colour palette is grey levels (PIL reads its samples as \(colors <= 2 ? 1 : 8)-bit)")
        }
        if grey {
            // the levels themselves: 1-bit samples 0 and 255, 8-bit ones as stored
            for i in 0 ..< min(256, palette.count / 3) { (palette[3 * i], palette[3 * i + 1], palette[3 * i + 2]) = (UInt8(i), UInt8(i), UInt8(i)) }
            if bits == 1 { (palette[3], palette[4], palette[5]) = (255, 255, 255) }
        }
        let rowBytes = ((width * bits + 31) >> 3) & ~3
        var start = dataOffset == 14 + headerSize && bits <= 8 ? dataOffset + paletteEntry * colors : dataOffset
        if dataOffset == 0 { start = cursor + (bits <= 8 ? paletteEntry * colors : 0) }
        // the last stored row needs its pixels, not its padding (PIL's raw decoder reads no more)
        let needed = rowBytes * (height - 1) + (width * bits + 7) / 8
        guard start >= 0, start <= raw.count, raw.count - start >= needed else {
            throw DataError(.truncated, file: file, "bmp pixel data: \(max(0, raw.count - start)) of \(needed) bytes")
        }
        // grey palettes give one channel (PIL's "L" / "1"), everything else three
        let channels = grey ? 1 : 3
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        for y in 0 ..< height {
            let row = start + (topDown ? y : height - 1 - y) * rowBytes
            for x in 0 ..< width {
                let o = channels * (y * width + x)
                switch bits {
                case 1, 4, 8:
                    let bit = x * bits
                    let index = Int(raw[row + bit / 8] >> UInt8(8 - bits - bit % 8)) & ((1 << bits) - 1)
                    for k in 0 ..< channels { pixels[o + k] = palette[3 * index + k] }
                case 16:
                    let v = Int(raw[row + 2 * x]) | Int(raw[row + 2 * x + 1]) << 8
                    let (bShift, bMax, gShift, gMax, rShift, rMax) = fields16
                    pixels[o] = UInt8((v >> rShift & rMax) * 255 / rMax)
                    pixels[o + 1] = UInt8((v >> gShift & gMax) * 255 / gMax)
                    pixels[o + 2] = UInt8((v >> bShift & bMax) * 255 / bMax)
                case 24:
                    let p = row + 3 * x
                    (pixels[o], pixels[o + 1], pixels[o + 2]) = (raw[p + 2], raw[p + 1], raw[p])
                default:
                    let p = row + 4 * x
                    (pixels[o], pixels[o + 1], pixels[o + 2]) = (raw[p + order32.2], raw[p + order32.1], raw[p + order32.0])
                }
            }
        }
        let alpha = compression == 3 && bits == 32 && (masks?[3] != 0 || masks == [0, 0, 0, 0])
        let mode = grey ? (colors <= 2 ? "1" : "L") : (bits <= 8 ? "P" : (alpha ? "RGBA" : "RGB"))
        let image = try RasterImage(width: width, height: height, channels: channels, pixels: pixels)
        return DecodedImage(image: image, format: .bmp, mode: mode, warnings: [])
    }
}
