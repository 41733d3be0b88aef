import CkptTensor

/// Every failure to read, decode or transform an image, or to lay out a dataset: what went wrong
/// and in which file.
///
/// Printed as one line, `file: message`, e.g.
/// `train/cat/001.jpg: truncated jpeg: premature end of data after 2113 of 4096 bytes`.
/// PyTorch/PIL counterpart: the `OSError`/`UnidentifiedImageError` PIL raises from
/// `Image.open(p).convert("RGB")`, and torchvision's `FileNotFoundError` for an empty folder.
public struct DataError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The class of failure.
    public enum Kind: String, Sendable {
        /// The bytes end before the image does.
        case truncated
        /// The bytes contradict the format (bad marker, CRC, Huffman code, zlib stream).
        case corrupt
        /// A valid file ckpt does not decode (12-bit JPEG, an image format other than JPEG/PNG).
        case unsupported
        /// Refused on purpose: declared dimensions beyond the pixel budget.
        case limit
        /// The operating system failed (open, read, list a directory).
        case io
        /// A transform or loader was given arguments it cannot honour (a zero size, an empty crop).
        case invalidArgument
        /// A dataset folder does not have the expected layout (no class folders, no images).
        case layout
    }

    /// The class of failure.
    public var kind: Kind
    /// The file or folder concerned (`"<memory>"` for bytes with no file).
    public var file: String
    /// Lower-case message saying what, expected and got.
    public var message: String

    /// An error of `kind` about `file`.
    public init(_ kind: Kind, file: String, _ message: String) {
        self.kind = kind
        self.file = file
        self.message = message
    }

    /// `file: message`, always one line: control characters are escaped and very long text is cut.
    public var description: String {
        OneLine.escaped(file + ": " + message)
    }
}

/// The most pixels a decoder accepts, checked on the declared dimensions before any pixel memory
/// is allocated: 2^28 (16384 × 16384), 768 MB as RGB. PIL's counterpart is
/// `Image.MAX_IMAGE_PIXELS` (about 89 million, a warning; twice that, an error).
public let maximumImagePixels = 1 << 28
