internal import CJPEG

/// JPEG decoding through libjpeg-turbo's TurboJPEG API: the only file that touches libjpeg.
///
/// TurboJPEG catches libjpeg's errors inside the library (its own setjmp) and returns -1, so no
/// error handler here ever exits or jumps over Swift frames. The settings are PIL's defaults
/// (`JpegDecode.c` without `draft`): accurate integer IDCT (`JDCT_ISLOW`), fancy upsampling,
/// block smoothing for progressive files, libjpeg's own guess of the colour space (JFIF and
/// Adobe markers), EXIF orientation ignored. PIL links libjpeg-turbo too, so pixels are equal.
///
/// Damage is judged as PIL judges it: a file whose data ends before the image does is
/// truncated (PIL: "image file is truncated"), including one missing only its final EOI marker;
/// libjpeg's other warnings (corrupt entropy data, extraneous bytes) leave a decoded image, as in
/// PIL, and are returned in `DecodedImage.warnings`.
enum JPEGDecoder {
    /// Decodes `bytes` (named `file` in errors) to grey (1 component), RGB (3) or RGB from
    /// CMYK/YCCK (4, read with Adobe's inverted polarity as PIL always assumes).
    /// - Throws: `DataError` `.truncated`, `.corrupt`, `.unsupported` or `.limit`.
    static func decode(_ bytes: UnsafeRawBufferPointer, file: String) throws -> DecodedImage {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count > 0 else {
            throw DataError(.truncated, file: file, "truncated jpeg: the file is empty")
        }
        guard let handle = tjInitDecompress() else {
            throw DataError(.io, file: file, "cannot create a jpeg decompressor: \(String(cString: tjGetErrorStr2(nil)))")
        }
        defer { tjDestroy(handle) }
        let size = UInt(bytes.count)
        let endsWithEOI = bytes.count >= 2 && bytes[bytes.count - 2] == 0xFF && bytes[bytes.count - 1] == 0xD9

        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let headerCode = tjDecompressHeader3(handle, base, size, &width, &height, &subsampling, &colorspace)
        // TurboJPEG's error code says whether a warning came first: libjpeg's memory source warns
        // "premature end" when the data runs out, then feeds fake EOI markers, and the fatal error
        // that follows names whatever structure was cut
        let warned = tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue)
        if width <= 0 || height <= 0 {
            // no frame header before the (real or fake) end of the stream
            if headerCode == 0 || warned {
                if !endsWithEOI { throw truncated(file, "the data ends before the frame header") }
                throw DataError(.corrupt, file: file, "corrupt jpeg: no image in the stream")
            }
            throw fatal(handle, file: file)
        }
        let w = Int(width), h = Int(height)
        guard w * h <= maximumImagePixels else {
            throw DataError(.limit, file: file, "jpeg declares \(w)x\(h) = \(w * h) pixels, more than the limit of \(maximumImagePixels)")
        }

        let (pixelFormat, bytesPerPixel, mode): (TJPF, Int, String)
        switch Int(colorspace) {
        case Int(TJCS_GRAY.rawValue): (pixelFormat, bytesPerPixel, mode) = (TJPF_GRAY, 1, "L")
        case Int(TJCS_CMYK.rawValue), Int(TJCS_YCCK.rawValue): (pixelFormat, bytesPerPixel, mode) = (TJPF_CMYK, 4, "CMYK")
        default: (pixelFormat, bytesPerPixel, mode) = (TJPF_RGB, 3, "RGB")
        }

        var warnings: [String] = []
        var failed: DataError?
        let decoded = [UInt8](unsafeUninitializedCapacity: w * h * bytesPerPixel) { buffer, count in
            count = buffer.count
            guard let out = buffer.baseAddress else { return }
            // first pass stops at the first warning, so its message is the first problem met
            let format = Int32(pixelFormat.rawValue)
            if tjDecompress2(handle, base, size, out, width, 0, height, format, TJFLAG_LIMITSCANS | TJFLAG_STOPONWARNING) == 0 { return }
            let first = String(cString: tjGetErrorStr2(handle))
            if tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) {
                failed = fatal(handle, file: file)
                return
            }
            if first.hasPrefix("Premature end of JPEG file") {
                failed = truncated(file, "the data ends before the image does")
                return
            }
            // damaged but maybe decodable, as PIL decodes it (it ignores libjpeg's warnings):
            // decode again past the warnings; libjpeg keeps the first warning's text unless a
            // fatal error replaces it
            _ = tjDecompress2(handle, base, size, out, width, 0, height, format, TJFLAG_LIMITSCANS)
            let second = String(cString: tjGetErrorStr2(handle))
            if !endsWithEOI {
                failed = truncated(file, "the data ends before the image does")
            } else if second != first {
                failed = DataError(.corrupt, file: file, "corrupt jpeg: \(lowerFirst(second)) (after: \(lowerFirst(first)))")
            } else {
                warnings.append(first)
            }
        }
        if let failed { throw failed }
        let image: RasterImage
        switch bytesPerPixel {
        case 4: image = cmykToRGB(decoded, width: w, height: h)
        default: image = RasterImage(uncheckedWidth: w, height: h, channels: bytesPerPixel, pixels: decoded)
        }
        return DecodedImage(image: image, format: .jpeg, mode: mode, warnings: warnings)
    }

    private static func truncated(_ file: String, _ what: String) -> DataError {
        DataError(.truncated, file: file, "truncated jpeg: \(what)")
    }

    /// A fatal error no warning preceded, classed by libjpeg's message.
    private static func fatal(_ handle: tjhandle, file: String) -> DataError {
        let text = lowerFirst(String(cString: tjGetErrorStr2(handle)))
        if text.contains("data precision") || text.hasPrefix("unsupported jpeg process") || text.contains("color conversion") {
            return DataError(.unsupported, file: file, "unsupported jpeg: \(text)")
        }
        if text.contains("scans") {
            return DataError(.limit, file: file, "jpeg refused: \(text)")
        }
        return DataError(.corrupt, file: file, "corrupt jpeg: \(text)")
    }

    /// libjpeg's messages start with a capital ("Not a JPEG file: …"); ours are lower-case.
    private static func lowerFirst(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.lowercased() + text.dropFirst()
    }

    /// CMYK as libjpeg returns it (Adobe files store it inverted) to RGB as PIL converts it:
    /// unpacked with rawmode `"CMYK;I"` (each byte inverted), then `cmyk2rgb`:
    /// `nk = 255 - K; R = clip(nk - (C * nk) / 255)` with PIL's rounded division by 255.
    private static func cmykToRGB(_ cmyk: [UInt8], width: Int, height: Int) -> RasterImage {
        var out = [UInt8](repeating: 0, count: width * height * 3)
        out.withUnsafeMutableBufferPointer { o in
            cmyk.withUnsafeBufferPointer { p in
                for i in 0 ..< width * height {
                    // inverted twice: PIL's nk = 255 - (255 - k) is the stored k
                    let nk = Int(p[4 * i + 3])
                    for c in 0 ..< 3 {
                        let v = 255 - Int(p[4 * i + c])
                        let t = v * nk + 128
                        let product = ((t >> 8) + t) >> 8
                        o[3 * i + c] = UInt8(clamping: nk - product)
                    }
                }
            }
        }
        return RasterImage(uncheckedWidth: width, height: height, channels: 3, pixels: out)
    }
}
