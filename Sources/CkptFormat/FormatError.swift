import CkptTensor

/// Every failure to read or write a checkpoint: what went wrong and exactly where.
///
/// Printed as one line, `file: member+0xOFFSET: message`, e.g.
/// `resnet18.pth: archive/data.pkl+0x1a3: unknown opcode 0x95`.
public struct FormatError: Error, Sendable, CustomStringConvertible {
    /// The class of failure.
    public enum Kind: String, Sendable {
        /// The bytes end before the structure does.
        case truncated
        /// The bytes contradict themselves or the format.
        case corrupt
        /// A valid construct ckpt does not handle (quantized tensors, an unknown format).
        case unsupported
        /// Refused on purpose: a global outside the allowlist, a path escaping the archive.
        case refused
        /// A safety budget was exceeded (size, depth, count).
        case limit
        /// The operating system failed (open, write, rename).
        case io
    }

    /// The class of failure.
    public var kind: Kind
    /// The file being read or written.
    public var file: String
    /// The archive member or part of the file (`archive/data.pkl`, `header`), if known.
    public var member: String?
    /// Byte offset inside `member` (or the file when `member` is nil), if known.
    public var offset: Int?
    /// Lower-case message saying what, expected and got.
    public var message: String

    /// An error of `kind` at `file`/`member`+`offset`.
    public init(_ kind: Kind, file: String, member: String? = nil, offset: Int? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.member = member
        self.offset = offset
        self.message = message
    }

    /// `file: member+0x1a3: message`, always one line: control characters in names and
    /// messages are escaped (`\r`, `\u{0}`), and very long parts are cut.
    public var description: String {
        OneLine.escaped(rawDescription)
    }

    private var rawDescription: String {
        var s = file
        switch (member, offset) {
        case let (m?, o?): s += ": \(m)+0x\(String(o, radix: 16))"
        case let (m?, nil): s += ": \(m)"
        case let (nil, o?): s += ": offset 0x\(String(o, radix: 16))"
        case (nil, nil): break
        }
        return s + ": " + message
    }
}
