internal import CPNG

/// The samples of a PNG as stored, before any colour conversion: one byte per sample below 8
/// bits (values kept), two big-endian bytes per sample at 16 bits; Adam7 passes merged.
struct PNGSamples {
    var width: Int
    var height: Int
    /// 1, 2, 4, 8 or 16.
    var bitDepth: Int
    /// PNG colour type: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA.
    var colorType: Int
    /// Bytes per row in `samples`.
    var rowBytes: Int
    var samples: [UInt8]
    /// PLTE entries as R, G, B triples (palette images only).
    var palette: [UInt8]
}

/// PNG reading through libpng's progressive-free read API. This file is the only one that
/// touches libpng: `PNGEncoder` below writes through it too.
///
/// libpng reports errors by longjmp; the jump targets live in the C functions of the CPNG shim
/// header, so no Swift frame is ever jumped over. No libpng transformation that changes values
/// is requested: gamma, sBIT, tRNS and alpha are all left to PIL's rules (`PNGConversion.swift`).
enum PNGDecoder {
    /// The samples of `bytes` (named `file` in errors).
    /// - Throws: `DataError` `.truncated` (the data ends early), `.corrupt` (bad signature, CRC,
    ///   zlib stream, header) or `.limit` (declared size beyond `maximumImagePixels`).
    static func samples(_ bytes: UnsafeRawBufferPointer, file: String) throws -> PNGSamples {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count > 0 else {
            throw DataError(.truncated, file: file, "truncated png: the file is empty")
        }
        // the declared size, read before libpng sees the file: libpng folds "exceeds user limits"
        // into a generic "invalid IHDR data"
        if bytes.count >= 24, Array(bytes[12 ..< 16]) == Array("IHDR".utf8) {
            let w = bytes[16 ..< 20].reduce(0) { $0 << 8 | Int($1) }
            let h = bytes[20 ..< 24].reduce(0) { $0 << 8 | Int($1) }
            if w > 0, h > 0, w * h > maximumImagePixels {
                throw DataError(.limit, file: file, "png declares \(w)x\(h) = \(w * h) pixels, more than the limit of \(maximumImagePixels)")
            }
        }
        var source = ckpt_png_source()
        source.data = base
        source.size = bytes.count
        source.offset = 0
        return try withUnsafeMutablePointer(to: &source) { src in
            guard let png = ckpt_png_create(src) else {
                throw DataError(.io, file: file, "cannot create a png reader")
            }
            let info = png_create_info_struct(png)
            defer { ckpt_png_destroy(png, info) }
            guard info != nil else { throw DataError(.io, file: file, "cannot create a png reader") }

            guard ckpt_png_read_info(png, info) != 0 else { throw failure(src, file: file) }
            var w: png_uint_32 = 0, h: png_uint_32 = 0
            var depth: Int32 = 0, colorType: Int32 = 0, interlace: Int32 = 0
            guard png_get_IHDR(png, info, &w, &h, &depth, &colorType, &interlace, nil, nil) != 0 else {
                throw DataError(.corrupt, file: file, "corrupt png: no IHDR chunk")
            }
            let width = Int(w), height = Int(h)
            guard width > 0, height > 0, width * height <= maximumImagePixels else {
                throw DataError(.limit, file: file, "png declares \(width)x\(height) = \(width * height) pixels, more than the limit of \(maximumImagePixels)")
            }
            var palette: [UInt8] = []
            if colorType == PNG_COLOR_TYPE_PALETTE {
                var entries: png_colorp?
                var count: Int32 = 0
                if png_get_PLTE(png, info, &entries, &count) != 0, let entries {
                    for i in 0 ..< Int(max(0, min(count, 256))) {
                        palette += [entries[i].red, entries[i].green, entries[i].blue]
                    }
                }
            }
            guard ckpt_png_prepare(png, info) != 0 else { throw failure(src, file: file) }
            let rowBytes = png_get_rowbytes(png, info)
            let channels = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][Int(colorType)] ?? 0
            let expected = width * channels * (depth == 16 ? 2 : 1)
            guard channels > 0, rowBytes == expected else {
                throw DataError(.corrupt, file: file, "corrupt png: colour type \(colorType) at \(depth) bits gives rows of \(rowBytes) bytes, expected \(expected)")
            }
            var failed = false
            let samples = [UInt8](unsafeUninitializedCapacity: rowBytes * height) { buffer, count in
                count = buffer.count
                guard let out = buffer.baseAddress else { failed = true; return }
                var rows = [png_bytep?](repeating: nil, count: height)
                for y in 0 ..< height { rows[y] = out + y * rowBytes }
                failed = rows.withUnsafeMutableBufferPointer { ckpt_png_read_image(png, $0.baseAddress) } == 0
            }
            if failed { throw failure(src, file: file) }
            return PNGSamples(width: width, height: height, bitDepth: Int(depth), colorType: Int(colorType),
                              rowBytes: rowBytes, samples: samples, palette: palette)
        }
    }

    /// The message libpng left in the source, classed: running out of bytes is truncation.
    private static func failure(_ source: UnsafeMutablePointer<ckpt_png_source>, file: String) -> DataError {
        let text = withUnsafeBytes(of: source.pointee.message) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        let message = text.isEmpty ? "libpng error" : text
        if message == "unexpected end of file" || message.hasPrefix("Not enough image data") || message.contains("truncated") {
            return DataError(.truncated, file: file, "truncated png: the data ends before the image does (libpng: \(message))")
        }
        if message.contains("Image width exceeds user limit") || message.contains("Image height exceeds user limit") {
            return DataError(.limit, file: file, "png declares a size beyond libpng's limit (libpng: \(message))")
        }
        return DataError(.corrupt, file: file, "corrupt png: \(lowerFirst(message))")
    }

    private static func lowerFirst(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.lowercased() + text.dropFirst()
    }
}

/// PNG writing through libpng: an 8-bit grey image (a class map) to bytes, which the caller
/// writes where it wants (a temporary file renamed into place). libpng's jumps stay in the shim,
/// as for reading.
enum PNGEncoder {
    /// The PNG bytes of `width` × `height` grey `pixels` (rows top to bottom, no padding):
    /// non-interlaced, 8 bits, default compression. PIL reads them back as mode `"L"` with these values.
    /// - Throws: `DataError.invalidArgument` when the sizes do not fit the pixels; `.io` when
    ///   libpng fails (out of memory), with its message.
    static func grey(width: Int, height: Int, pixels: [UInt8], file: String) throws -> [UInt8] {
        guard width > 0, height > 0, width <= Int(UInt32.max), height <= Int(UInt32.max),
              !width.multipliedReportingOverflow(by: height).overflow, pixels.count == width * height else {
            throw DataError(.invalidArgument, file: file, "\(pixels.count) bytes do not fill a \(width)x\(height) grey png")
        }
        var sink = ckpt_png_sink()
        defer { ckpt_png_sink_free(&sink) }
        let ok = pixels.withUnsafeBufferPointer { p in
            ckpt_png_write_grey8(&sink, p.baseAddress, png_uint_32(width), png_uint_32(height))
        }
        guard ok != 0, let data = sink.data else {
            let message = withUnsafeBytes(of: sink.message) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            throw DataError(.io, file: file, "cannot encode the png: \(message.isEmpty ? "libpng error" : message)")
        }
        return Array(UnsafeBufferPointer(start: data, count: sink.size))
    }
}
