// Images here are what PIL holds after `convert("RGB")` or `convert("L")`: H rows of W pixels,
// each C interleaved bytes (C = 3: R, G, B; C = 1: grey), rows top to bottom with no padding.

/// An 8-bit image of 1 (grey) or 3 (RGB) interleaved channels: the unit every transform takes
/// and returns.
///
/// PIL counterpart: an `Image` of mode `"L"` or `"RGB"`; `pixels` is `np.asarray(image)` flattened
/// (HWC order).
public struct RasterImage: Sendable, Equatable {
    /// Pixels per row.
    public let width: Int
    /// Rows.
    public let height: Int
    /// Bytes per pixel: 1 (grey, PIL's `"L"`) or 3 (PIL's `"RGB"`).
    public let channels: Int
    /// `height * width * channels` bytes, row-major, channels interleaved.
    public var pixels: [UInt8]

    /// An image over `pixels`.
    /// - Throws: `DataError.invalidArgument` when the channel count is not 1 or 3, a dimension is
    ///   not positive, or the byte count does not match.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        guard channels == 1 || channels == 3 else {
            throw DataError(.invalidArgument, file: "<image>", "an image has 1 or 3 channels, got \(channels)")
        }
        guard width > 0, height > 0, width.multipliedReportingOverflow(by: height).overflow == false,
              width * height <= maximumImagePixels, pixels.count == width * height * channels
        else {
            throw DataError(.invalidArgument, file: "<image>", "\(pixels.count) bytes do not fill \(width)x\(height)x\(channels)")
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// An image filled with `value` (PIL's `Image.new(mode, size, value)`).
    /// - Throws: `DataError.invalidArgument` as `init(width:height:channels:pixels:)`.
    public init(width: Int, height: Int, channels: Int, repeating value: UInt8 = 0) throws {
        guard width > 0, height > 0, width <= maximumImagePixels, height <= maximumImagePixels,
              width * height <= maximumImagePixels else {
            throw DataError(.invalidArgument, file: "<image>", "image size must be positive and at most \(maximumImagePixels) pixels, got \(width)x\(height)")
        }
        try self.init(width: width, height: height, channels: channels,
                      pixels: [UInt8](repeating: value, count: width * height * channels))
    }

    /// Builds the image without checking; callers in this module computed the sizes.
    init(uncheckedWidth width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// The bytes of the pixel at column `x`, row `y` (1 or 3 of them); both must be inside the
    /// image, as an array index must.
    public func pixel(x: Int, y: Int) -> ArraySlice<UInt8> {
        let start = (y * width + x) * channels
        return pixels[start ..< start + channels]
    }

    /// This image as RGB: grey values repeated in the three channels, RGB returned as is.
    /// PIL counterpart: `image.convert("RGB")` (`l2rgb`).
    public func rgb() -> RasterImage {
        if channels == 3 { return self }
        var out = [UInt8](repeating: 0, count: pixels.count * 3)
        out.withUnsafeMutableBufferPointer { o in
            pixels.withUnsafeBufferPointer { p in
                for i in 0 ..< p.count {
                    o[3 * i] = p[i]
                    o[3 * i + 1] = p[i]
                    o[3 * i + 2] = p[i]
                }
            }
        }
        return RasterImage(uncheckedWidth: width, height: height, channels: 3, pixels: out)
    }

    /// This image as grey, with PIL's ITU-R 601-2 luma in 16-bit fixed point:
    /// `(R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16`; grey is returned as is.
    /// PIL counterpart: `image.convert("L")` (`rgb2l`).
    public func grey() -> RasterImage {
        if channels == 1 { return self }
        var out = [UInt8](repeating: 0, count: width * height)
        out.withUnsafeMutableBufferPointer { o in
            pixels.withUnsafeBufferPointer { p in
                for i in 0 ..< o.count {
                    let r = UInt32(p[3 * i]), g = UInt32(p[3 * i + 1]), b = UInt32(p[3 * i + 2])
                    o[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
                }
            }
        }
        return RasterImage(uncheckedWidth: width, height: height, channels: 1, pixels: out)
    }

    /// This image with `channels` channels: 3 gives `rgb()`, 1 gives `grey()`.
    /// - Throws: `DataError.invalidArgument` for any other count.
    public func converted(toChannels count: Int) throws -> RasterImage {
        switch count {
        case 1: return grey()
        case 3: return rgb()
        default: throw DataError(.invalidArgument, file: "<image>", "an image converts to 1 or 3 channels, got \(count)")
        }
    }


    /// Two images of one size as the red and green planes of one RGB image (blue 0), each
    /// converted to grey first: a two-input model's x1 and x2 go through one transform, so both
    /// get the same crop and flip, and come out as planes 0 and 1.
    /// - Throws: `DataError.invalidArgument` naming `secondFile` when the sizes differ.
    public static func planes(_ first: RasterImage, _ second: RasterImage, secondFile: String) throws -> RasterImage {
        guard first.width == second.width, first.height == second.height else {
            throw DataError(.invalidArgument, file: secondFile,
                            "is \(second.width)x\(second.height) but its first image is \(first.width)x\(first.height); the two inputs must be the same size")
        }
        let a = first.grey().pixels, b = second.grey().pixels
        var pixels = [UInt8](repeating: 0, count: a.count * 3)
        for i in 0 ..< a.count {
            pixels[3 * i] = a[i]
            pixels[3 * i + 1] = b[i]
        }
        return try RasterImage(width: first.width, height: first.height, channels: 3, pixels: pixels)
    }}

/// What a decoder returns: the pixels in the smallest of grey or RGB that holds them exactly,
/// and what the file declared.
///
/// PIL counterpart: `Image.open(p)` before `convert`; `image.rgb()` is `convert("RGB")` and
/// `image.grey()` is `convert("L")`.
public struct DecodedImage: Sendable {
    /// Grey sources (grey JPEG, PNG grey or grey + alpha at any depth) as 1 channel, every other
    /// source as 3 (alpha dropped, palette looked up, CMYK converted).
    public var image: RasterImage
    /// The container the bytes were recognised as.
    public var format: ImageFormat
    /// The mode PIL opens the file in (`"RGB"`, `"L"`, `"CMYK"`, `"P"`, `"RGBA"`, `"LA"`, `"I;16"`, `"1"`).
    public var mode: String
    /// Recoverable damage the decoder reported and PIL ignores too (libjpeg's
    /// `Corrupt JPEG data: …` warnings); empty for a clean file.
    public var warnings: [String]
}

/// The image containers ckpt decodes, recognised by their first bytes (never by extension, as
/// PIL's `Image.open` does).
public enum ImageFormat: String, Sendable {
    /// JPEG/JFIF/EXIF (`FF D8 FF`).
    case jpeg
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    case png
    /// Netpbm: PBM, PGM, PPM (`P1`–`P6` and a whitespace byte).
    case netpbm
    /// Windows bitmap (`BM`).
    case bmp
}
