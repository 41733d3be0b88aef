internal import CJPEG

/// JPEG decoding through libjpeg-turbo's TurboJPEG API: the only file that touches libjpeg.
///
/// TurboJPEG catches libjpeg's errors inside the library (its own setjmp) and returns -1, so no
/// error handler here ever exits or jumps over Swift frames. The settings are PIL's defaults
/// (`JpegDecode.c` without `draft`): accurate integer IDCT (`JDCT_ISLOW`), fancy upsampling,
/// block smoothing for progressive files, libjpeg's own guess of the colour space (JFIF and
/// Adobe markers), EXIF orientation ignored. PIL links libjpeg-turbo too, so pixels are equal.
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
        if tjDecompressHeader3(handle, base, size, &width, &height, &subsampling, &colorspace) != 0,
           tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) {
            throw failure(handle, file: file, endsWithEOI: endsWithEOI)
        }
        let w = Int(width), h = Int(height)
        guard w > 0, h > 0 else {
            throw DataError(.corrupt, file: file, "corrupt jpeg: declared size \(w)x\(h)")
        }
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
            let rc = tjDecompress2(handle, base, size, out, width, 0, height, Int32(pixelFormat.rawValue), TJFLAG_LIMITSCANS)
            guard rc != 0 else { return }
            if tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) {
                // complete image, damaged data: libjpeg keeps the first warning's text. The data
                // ran out only if the file has no final EOI marker (inside entropy-coded data
                // FF D9 cannot occur), and then PIL reports the file truncated too.
                let text = String(cString: tjGetErrorStr2(handle))
                if !endsWithEOI || text.hasPrefix("Premature end of JPEG file") {
                    failed = DataError(.truncated, file: file, "truncated jpeg: the data ends before the image does (libjpeg: \(lowerFirst(text)))")
                } else {
                    warnings.append(text)
                }
            } else {
                failed = failure(handle, file: file, endsWithEOI: endsWithEOI)
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

    /// The error TurboJPEG reported, classed: a stream without its final EOI marker is truncated.
    private static func failure(_ handle: tjhandle, file: String, endsWithEOI: Bool) -> DataError {
        let text = lowerFirst(String(cString: tjGetErrorStr2(handle)))
        if text.contains("unsupported") || text.contains("precision") {
            return DataError(.unsupported, file: file, "unsupported jpeg: \(text)")
        }
        if !endsWithEOI {
            return DataError(.truncated, file: file, "truncated jpeg: the data ends before the image does (libjpeg: \(text))")
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
