/// Netpbm images (`.pbm`, `.pgm`, `.ppm`: `P1`–`P6`) decoded as PIL's `PpmImagePlugin` decodes
/// them, so that `convert("RGB")` gives PIL's pixels: bitmaps as mode `"1"` (a set bit is black),
/// grey maps as `"L"` (or `"I"` above 8 bits, which PIL's conversion to `"L"`/`"RGB"` clips at
/// 255), pixmaps as `"RGB"`; samples of another maximum than the mode's scaled by Python's
/// `round(value / maxval * out_max)` (halves to even).
///
/// The traffic-sign datasets (GTSRB, BelgiumTS) ship `.ppm` files; torchvision's `ImageFolder`
/// lists `.ppm` and `.pgm` among its extensions.
enum PNMDecoder {
    /// True when the first bytes are a netpbm magic number PIL opens (`P1`–`P6`).
    static func accepts(_ raw: UnsafeRawBufferPointer) -> Bool {
        raw.count >= 3 && raw[0] == UInt8(ascii: "P") && (UInt8(ascii: "1") ... UInt8(ascii: "6")).contains(raw[1])
            && isWhitespace(raw[2])
    }

    /// PIL's `b_whitespace`: space, tab, LF, VT, FF, CR.
    static func isWhitespace(_ c: UInt8) -> Bool { c == 0x20 || (0x09 ... 0x0D).contains(c) }

    /// Decodes a netpbm file.
    /// - Throws: `DataError` `.corrupt` (a header PIL refuses, a sample above maxval in a plain
    ///   file), `.truncated` (fewer samples than the size), `.limit` (too many pixels).
    static func decode(_ raw: UnsafeRawBufferPointer, file: String) throws -> DecodedImage {
        var reader = HeaderReader(raw: raw, file: file, position: 3)
        let kind = raw[1] - UInt8(ascii: "0")
        let width = try reader.integer("width"), height = try reader.integer("height")
        guard width > 0, height > 0, width <= maximumImagePixels / height else {
            throw DataError(width > 0 && height > 0 ? .limit : .corrupt, file: file, "netpbm size \(width)x\(height)")
        }
        let bitmap = kind == 1 || kind == 4
        let channels = kind == 3 || kind == 6 ? 3 : 1
        let maxval = bitmap ? 1 : try reader.integer("maxval")
        guard (1 ..< 65536).contains(maxval) else {
            throw DataError(.corrupt, file: file, "maxval must be greater than 0 and less than 65536, got \(maxval)")
        }
        // PIL opens a grey map above 8 bits as "I" (32-bit samples up to 65535); its conversion
        // to "L" or "RGB" clips them at 255
        let wide = channels == 1 && maxval > 255
        let outMax = wide ? 65535 : 255
        let count = width * height * channels
        var pixels = [UInt8](repeating: 0, count: count)
        let plain = kind <= 3
        let mode = bitmap ? "1" : (channels == 3 ? "RGB" : (wide ? "I" : "L"))
        func store(_ i: Int, _ value: Int) {
            // value is already on 0...outMax; "I" samples clip to 8 bits as PIL's i2l / i2rgb do
            pixels[i] = UInt8(min(value, 255))
        }
        func scaled(_ v: Int) -> Int {
            // Python's round(v / maxval * out_max): double division, then ties to even
            if maxval == outMax { return v }
            return min(outMax, Int((Double(v) / Double(maxval) * Double(outMax)).rounded(.toNearestOrEven)))
        }
        if bitmap && !plain {
            // P4: rows of bits, most significant first, each row padded to a byte; 1 is black
            let rowBytes = (width + 7) / 8
            let start = reader.position + 1
            guard start <= raw.count, raw.count - start >= rowBytes * height else {
                throw DataError(.truncated, file: file, "netpbm bitmap: \(raw.count - min(start, raw.count)) of \(rowBytes * height) bytes")
            }
            for y in 0 ..< height {
                for x in 0 ..< width {
                    let bit = (raw[start + y * rowBytes + x / 8] >> (7 - UInt8(x % 8))) & 1
                    pixels[y * width + x] = bit == 1 ? 0 : 255
                }
            }
        } else if plain {
            // P1–P3: whitespace-separated decimal samples, comments allowed (P1's digits may touch)
            var p = reader.position
            var i = 0
            while i < count {
                while p < raw.count, isWhitespace(raw[p]) || raw[p] == UInt8(ascii: "#") {
                    if raw[p] == UInt8(ascii: "#") {
                        while p < raw.count, raw[p] != 0x0A, raw[p] != 0x0D { p += 1 }
                    } else {
                        p += 1
                    }
                }
                guard p < raw.count else { throw DataError(.truncated, file: file, "netpbm plain data: \(i) of \(count) samples") }
                if bitmap {
                    let c = raw[p]
                    guard c == UInt8(ascii: "0") || c == UInt8(ascii: "1") else {
                        throw DataError(.corrupt, file: file, "netpbm plain bitmap: invalid character at offset \(p)")
                    }
                    pixels[i] = c == UInt8(ascii: "1") ? 0 : 255
                    p += 1
                } else {
                    var v = 0, digits = 0
                    while p < raw.count, (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(raw[p]) {
                        v = v * 10 + Int(raw[p] - UInt8(ascii: "0"))
                        digits += 1
                        p += 1
                        guard digits <= 9 else { throw DataError(.corrupt, file: file, "netpbm plain data: a sample of more than 9 digits at offset \(p)") }
                    }
                    guard digits > 0, p == raw.count || isWhitespace(raw[p]) || raw[p] == UInt8(ascii: "#") else {
                        throw DataError(.corrupt, file: file, "netpbm plain data: invalid character at offset \(p)")
                    }
                    guard v <= maxval else {
                        throw DataError(.corrupt, file: file, "netpbm plain data: sample \(v) above maxval \(maxval)")
                    }
                    store(i, scaled(v))
                }
                i += 1
            }
        } else {
            // P5/P6: one byte per sample up to maxval 255, two (big-endian) above
            let width2 = maxval < 256 ? 1 : 2
            let start = reader.position + 1
            guard start <= raw.count, raw.count - start >= count * width2 else {
                throw DataError(.truncated, file: file, "netpbm data: \((raw.count - min(start, raw.count)) / width2) of \(count) samples")
            }
            for i in 0 ..< count {
                let v = width2 == 1 ? Int(raw[start + i]) : Int(raw[start + 2 * i]) << 8 | Int(raw[start + 2 * i + 1])
                store(i, scaled(v))
            }
        }
        let image = try RasterImage(width: width, height: height, channels: channels, pixels: pixels)
        return DecodedImage(image: image, format: .netpbm, mode: mode, warnings: [])
    }

    /// PIL's `_read_token`: skips whitespace and `#` comments, then reads at most 10 characters.
    struct HeaderReader {
        let raw: UnsafeRawBufferPointer
        let file: String
        /// The byte after the last token read (the whitespace that ended it).
        var position: Int

        mutating func integer(_ what: String) throws -> Int {
            var token: [UInt8] = []
            while token.count <= 10 {
                guard position < raw.count else { break }
                let c = raw[position]
                position += 1
                if PNMDecoder.isWhitespace(c) {
                    if token.isEmpty { continue }
                    position -= 1
                    break
                } else if c == UInt8(ascii: "#") {
                    while position < raw.count, raw[position] != 0x0A, raw[position] != 0x0D { position += 1 }
                    if position < raw.count { position += 1 }
                    continue
                }
                token.append(c)
            }
            guard !token.isEmpty else { throw DataError(.truncated, file: file, "netpbm header: reached the end before the \(what)") }
            guard token.count <= 10, let v = Int(String(decoding: token, as: UTF8.self)) else {
                throw DataError(.corrupt, file: file, "netpbm header: invalid \(what) '\(String(decoding: token.prefix(12), as: UTF8.self))'")
            }
            return v
        }
    }
}
