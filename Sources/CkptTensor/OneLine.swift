/// Text made safe for a one-line error message: what every library's error prints through.
public enum OneLine {
    /// `text` with control characters escaped (`\n`, `\u{1b}`, line and paragraph separators) and
    /// cut to about 2000 characters, so a hostile file name or key cannot forge or flood a line.
    public static func escaped(_ text: String) -> String {
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
}
