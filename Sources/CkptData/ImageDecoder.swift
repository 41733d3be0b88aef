import Foundation

/// Reads image files as PIL reads them: the format from the first bytes, pixels equal to
/// `Image.open(p).convert("RGB")` / `.convert("L")`.
///
/// Every failure throws one `DataError` line naming the file; declared dimensions are checked
/// against `maximumImagePixels` before pixel memory is allocated; nothing here prints or exits.
public enum ImageDecoder {
    /// The largest file read whole into memory (1 GiB); a larger file is refused as `.limit`.
    public static let maximumFileBytes = 1 << 30

    /// Decodes the image file at `path`.
    /// - Throws: `DataError` `.io` (cannot read), `.unsupported` (not JPEG, PNG, netpbm or BMP),
    ///   `.truncated`, `.corrupt` or `.limit`.
    /// PIL counterpart: `Image.open(path)` followed by `load()`.
    public static func decode(contentsOf path: String) throws -> DecodedImage {
        let bytes = try readFile(path)
        return try bytes.withUnsafeBytes { try decode($0, file: path) }
    }

    /// Decodes the image file at `path` to `channels` channels (3: RGB, 1: grey).
    /// - Throws: as `decode(contentsOf:)`, and `.invalidArgument` for another channel count.
    /// PIL counterpart: `Image.open(path).convert("RGB")` (or `"L"`).
    public static func decode(contentsOf path: String, channels: Int) throws -> RasterImage {
        try decode(contentsOf: path).image.converted(toChannels: channels)
    }

    /// Decodes `bytes`, naming them `file` in errors.
    /// - Throws: as `decode(contentsOf:)` except `.io`.
    /// PIL counterpart: `Image.open(io.BytesIO(bytes))`.
    public static func decode(_ bytes: [UInt8], file: String = "<memory>") throws -> DecodedImage {
        try bytes.withUnsafeBytes { try decode($0, file: file) }
    }

    /// The class index of every pixel of a segmentation mask at `path`: palette indices for a
    /// palette PNG, values for a grey PNG (PIL's `np.array(Image.open(mask))`).
    /// - Throws: as `decode(contentsOf:)`, and `.unsupported` for a JPEG mask (lossy: its values
    ///   are not class indices) or a PNG that is neither palette nor grey of 8 bits or fewer.
    public static func labelMap(contentsOf path: String) throws -> LabelMap {
        let bytes = try readFile(path)
        return try bytes.withUnsafeBytes { raw in
            guard sniff(raw) == .png else {
                throw DataError(.unsupported, file: path, "a mask must be a palette or grey png, got \(sniff(raw).map { $0.rawValue } ?? "unknown bytes")")
            }
            let samples = try PNGDecoder.samples(raw, file: path)
            guard let labels = samples.labels() else {
                throw DataError(.unsupported, file: path, "a mask must be a palette or grey png of at most 8 bits, got mode \(samples.pilMode) at \(samples.bitDepth) bits")
            }
            return LabelMap(uncheckedWidth: samples.width, height: samples.height, labels: labels)
        }
    }

    /// The format the first bytes announce, `nil` when none ckpt decodes.
    public static func sniff(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        if bytes.count >= 8, zip(bytes.prefix(8), signature).allSatisfy({ $0 == $1 }) { return .png }
        if PNMDecoder.accepts(bytes) { return .netpbm }
        if BMPDecoder.accepts(bytes) { return .bmp }
        return nil
    }

    static func decode(_ raw: UnsafeRawBufferPointer, file: String) throws -> DecodedImage {
        switch sniff(raw) {
        case .jpeg:
            return try JPEGDecoder.decode(raw, file: file)
        case .png:
            let samples = try PNGDecoder.samples(raw, file: file)
            return DecodedImage(image: samples.image(), format: .png, mode: samples.pilMode, warnings: [])
        case .netpbm:
            return try PNMDecoder.decode(raw, file: file)
        case .bmp:
            return try BMPDecoder.decode(raw, file: file)
        case nil:
            if raw.isEmpty { throw DataError(.truncated, file: file, "empty file: expected a jpeg, png, netpbm or bmp image") }
            let head = raw.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw DataError(.unsupported, file: file, "not a jpeg, png, netpbm (ppm/pgm/pbm) or bmp image: the file starts with \(head)")
        }
    }

    /// The whole file, refused before reading when larger than `maximumFileBytes`.
    static func readFile(_ path: String) throws -> [UInt8] {
        // O_NONBLOCK: opening a FIFO named `x.jpg` read-only would otherwise wait for a writer
        // forever (PIL does); it has no effect on a regular file's reads
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw DataError(.io, file: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw DataError(.io, file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw DataError(.io, file: path, "not a regular file (\(fileKind(st.st_mode))): expected an image file")
        }
        let size = Int(st.st_size)
        guard size <= maximumFileBytes else {
            throw DataError(.limit, file: path, "file of \(size) bytes is larger than the limit of \(maximumFileBytes)")
        }
        var readError: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = 0
            guard let base = buffer.baseAddress else { return }
            while count < size {
                let n = read(fd, base + count, size - count)
                if n < 0 {
                    if errno == EINTR { continue }
                    readError = errno
                    return
                }
                if n == 0 { break } // the file shrank while being read: decode what is there
                count += n
            }
        }
        if readError != 0 {
            throw DataError(.io, file: path, "cannot read: \(String(cString: strerror(readError)))")
        }
        return bytes
    }

    /// What a non-regular file is, for the error that refuses it.
    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "mode \(String(mode & S_IFMT, radix: 8))"
        }
    }
}

/// A segmentation mask: one class index per pixel.
///
/// PyTorch counterpart: the `torch.as_tensor(np.array(mask), dtype=torch.int64)` target of a
/// segmentation dataset (here bytes; widened when batched).
public struct LabelMap: Sendable, Equatable {
    /// Pixels per row.
    public let width: Int
    /// Rows.
    public let height: Int
    /// `height * width` class indices, row-major.
    public var labels: [UInt8]

    /// A mask over `labels`.
    /// - Throws: `DataError.invalidArgument` when the count does not match the size.
    public init(width: Int, height: Int, labels: [UInt8]) throws {
        guard width > 0, height > 0, !width.multipliedReportingOverflow(by: height).overflow,
              width * height <= maximumImagePixels, labels.count == width * height else {
            throw DataError(.invalidArgument, file: "<mask>", "\(labels.count) labels do not fill \(width)x\(height)")
        }
        self.init(uncheckedWidth: width, height: height, labels: labels)
    }

    init(uncheckedWidth width: Int, height: Int, labels: [UInt8]) {
        self.width = width
        self.height = height
        self.labels = labels
    }
}
