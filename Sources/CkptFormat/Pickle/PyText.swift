/// Decoding of the text forms old pickles use: Python string escapes (`STRING`,
/// `UNICODE`'s raw-unicode-escape) and big integers turned into decimal text.
enum PyEscapes {
    /// Decodes backslash escapes; `rawUnicode` accepts only `\uXXXX` and `\UXXXXXXXX` as
    /// raw-unicode-escape does. Returns nil on a malformed escape.
    static func decode(_ b: [UInt8], rawUnicode: Bool) throws -> String? {
        var scalars = String.UnicodeScalarView()
        var i = 0
        func hex(_ n: Int) -> UInt32? {
            guard i + n <= b.count else { return nil }
            var v: UInt32 = 0
            for k in 0 ..< n {
                guard let d = hexDigit(b[i + k]) else { return nil }
                v = v << 4 | d
            }
            i += n
            return v
        }
        while i < b.count {
            let c = b[i]
            i += 1
            guard c == 0x5C, i < b.count else {
                scalars.append(Unicode.Scalar(c))
                continue
            }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "u"), UInt8(ascii: "U"):
                guard let v = hex(e == UInt8(ascii: "u") ? 4 : 8), let s = Unicode.Scalar(v) else { return nil }
                scalars.append(s)
            case _ where rawUnicode:
                scalars.append("\\")
                scalars.append(Unicode.Scalar(e))
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "0") ... UInt8(ascii: "7"):
                var v = UInt32(e - 0x30)
                var k = 0
                while k < 2, i < b.count, b[i] >= 0x30, b[i] <= 0x37 { v = v * 8 + UInt32(b[i] - 0x30); i += 1; k += 1 }
                guard let s = Unicode.Scalar(v) else { return nil }
                scalars.append(s)
            case UInt8(ascii: "x"):
                guard let v = hex(2), let s = Unicode.Scalar(v) else { return nil }
                scalars.append(s)
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): scalars.append(Unicode.Scalar(e))
            default:
                scalars.append("\\")
                scalars.append(Unicode.Scalar(e))
            }
        }
        return String(scalars)
    }

    private static func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30 ... 0x39: return UInt32(c - 0x30)
        case 0x61 ... 0x66: return UInt32(c - 0x61 + 10)
        case 0x41 ... 0x46: return UInt32(c - 0x41 + 10)
        default: return nil
        }
    }
}

/// Decimal text of integers wider than 64 bits (LONG1/LONG4 payloads up to 64 bytes).
enum BigDecimal {
    /// Decimal text of a little-endian two's-complement integer.
    static func fromTwosComplement(_ le: [UInt8]) -> String {
        let negative = (le.last ?? 0) & 0x80 != 0
        var mag = le
        if negative {
            // magnitude = ~x + 1
            var carry = 1
            for i in 0 ..< mag.count {
                let v = Int(~mag[i]) + carry
                mag[i] = UInt8(v & 0xFF)
                carry = v >> 8
            }
        }
        // repeated division by 10 over base-256 digits, most significant first
        var digits = Array(mag.reversed())
        var out: [UInt8] = []
        while digits.contains(where: { $0 != 0 }) {
            var rem = 0
            for i in 0 ..< digits.count {
                let cur = rem * 256 + Int(digits[i])
                digits[i] = UInt8(cur / 10)
                rem = cur % 10
            }
            out.append(UInt8(0x30 + rem))
        }
        if out.isEmpty { out = [0x30] }
        return (negative ? "-" : "") + String(decoding: out.reversed(), as: UTF8.self)
    }
}
