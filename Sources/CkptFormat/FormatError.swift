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
        FormatError.oneLine(rawDescription)
    }

    /// Escapes control characters and cuts the text to 2000 characters.
    public static func oneLine(_ text: String) -> String {
        var out = ""
        for u in text.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F || (0x80 ..< 0xA0).contains(u.value) || u.value == 0x2028 || u.value == 0x2029 {
                    out += "\\u{" + String(u.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(u)
                }
            }
            if out.count > 2000 { return out + "..." }
        }
        return out
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
