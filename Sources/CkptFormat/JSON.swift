// A small strict JSON (RFC 8259) parser and writer: enough for safetensors headers and the
// CLI's `--json` output. Parsing never recurses deeper than `maxDepth`, rejects invalid UTF-8,
// keeps object key order and number text, and reports byte offsets in every error.

import CkptTensor

/// A JSON number kept as its source text, so integers up to 2^64−1 (and beyond) stay exact.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The number as written (`-12`, `3.5e-7`), always valid RFC 8259 number syntax.
    public let text: String

    /// A number from RFC 8259 number text, or nil when `text` is not one.
    public init?(text: String) {
        guard JSONNumber.isValidSyntax(Array(text.utf8)) else { return nil }
        self.text = text
    }

    private init(validText: String) { self.text = validText }

    /// The number of a signed integer.
    public init(_ value: Int) { self.text = String(value) }

    /// The number of an unsigned 64-bit integer.
    public init(_ value: UInt64) { self.text = String(value) }

    /// The number of a double, written in Swift's shortest round-trip form; nil for NaN and
    /// infinities, which JSON cannot express.
    public init?(_ value: Double) {
        guard value.isFinite else { return nil }
        // Swift prints integral doubles as "1.0" and small ones as "1e-05"; both are valid JSON.
        self.text = value.description
    }

    /// The nearest double (`±infinity` when the exponent is out of range).
    public var doubleValue: Double { Double(text) ?? .nan }

    /// True when the text has neither a fraction nor an exponent.
    public var isInteger: Bool { !text.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) }

    /// The exact value when the text is an integer that fits `Int`, else nil.
    public var intValue: Int? { isInteger ? Int(text) : nil }

    /// The exact value when the text is a non-negative integer up to 2^64−1, else nil.
    public var uint64Value: UInt64? {
        guard isInteger else { return nil }
        if text == "-0" { return 0 }
        return UInt64(text)
    }

    /// The number text.
    public var description: String { text }

    /// RFC 8259: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    static func isValidSyntax(_ b: [UInt8]) -> Bool {
        b.withUnsafeBytes { raw in
            var p = 0
            return JSONNumber.scan(raw, &p) == nil && p == raw.count
        }
    }

    /// Advances `p` over a number starting at `p`; returns a description of the first syntax
    /// error (and leaves `p` at it), or nil.
    static func scan(_ b: UnsafeRawBufferPointer, _ p: inout Int) -> String? {
        func digit(_ i: Int) -> Bool { i < b.count && b[i] >= 0x30 && b[i] <= 0x39 }
        if p < b.count && b[p] == UInt8(ascii: "-") { p += 1 }
        guard digit(p) else { return "expected a digit" }
        if b[p] == UInt8(ascii: "0") {
            p += 1
            if digit(p) { return "leading zero in number" }
        } else {
            while digit(p) { p += 1 }
        }
        if p < b.count && b[p] == UInt8(ascii: ".") {
            p += 1
            guard digit(p) else { return "expected a digit after '.'" }
            while digit(p) { p += 1 }
        }
        if p < b.count && (b[p] == UInt8(ascii: "e") || b[p] == UInt8(ascii: "E")) {
            p += 1
            if p < b.count && (b[p] == UInt8(ascii: "+") || b[p] == UInt8(ascii: "-")) { p += 1 }
            guard digit(p) else { return "expected a digit in exponent" }
            while digit(p) { p += 1 }
        }
        return nil
    }

    fileprivate static func unchecked(_ text: String) -> JSONNumber { JSONNumber(validText: text) }
}

/// A JSON value. Objects keep their members in document order, duplicates included (see
/// `JSONParseOptions.rejectDuplicateKeys` and `firstDuplicateKey`).
public enum JSONValue: Sendable, Equatable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, with its source text.
    case number(JSONNumber)
    /// A string (already unescaped).
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object, members in order.
    case object([(key: String, value: JSONValue)])

    /// An integer number.
    public static func int(_ value: Int) -> JSONValue { .number(JSONNumber(value)) }

    /// A double number; `null` for NaN and infinities, as JavaScript's `JSON.stringify` does.
    public static func double(_ value: Double) -> JSONValue {
        guard let n = JSONNumber(value) else { return .null }
        return .number(n)
    }

    /// Structural equality; object members compare in order.
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The value of the first member named `key` when this is an object.
    public subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.first(where: { $0.key == key })?.value
    }

    /// The string when this is `.string`.
    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// The elements when this is `.array`.
    public var arrayValue: [JSONValue]? {
        if case let .array(a) = self { return a }
        return nil
    }

    /// The members when this is `.object`.
    public var objectValue: [(key: String, value: JSONValue)]? {
        if case let .object(m) = self { return m }
        return nil
    }

    /// The number when this is `.number`.
    public var numberValue: JSONNumber? {
        if case let .number(n) = self { return n }
        return nil
    }

    /// The JSON type name (`object`, `array`, `string`, `number`, `boolean`, `null`), for messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// The first key that occurs twice among this object's own members (not nested ones), with
    /// the index of its second occurrence; nil when keys are unique or this is not an object.
    public var firstDuplicateKey: (key: String, index: Int)? {
        guard case let .object(members) = self else { return nil }
        if members.count <= 8 {
            for i in members.indices.dropFirst() where members[..<i].contains(where: { $0.key == members[i].key }) {
                return (members[i].key, i)
            }
            return nil
        }
        var seen = Set<ExactKey>()
        for (i, m) in members.enumerated() where !seen.insert(ExactKey(m.key)).inserted {
            return (m.key, i)
        }
        return nil
    }
}

// MARK: - Parsing

/// Options of the JSON parser.
public struct JSONParseOptions: Sendable {
    /// Deepest nesting of arrays and objects accepted; deeper input throws a `limit` error.
    public var maxDepth: Int
    /// When true, an object with the same key twice throws a `corrupt` error at the second key.
    public var rejectDuplicateKeys: Bool

    /// Options with a depth limit of 128 (serde_json's) and duplicate keys kept.
    public init(maxDepth: Int = 128, rejectDuplicateKeys: Bool = false) {
        self.maxDepth = maxDepth
        self.rejectDuplicateKeys = rejectDuplicateKeys
    }
}

/// Where parse errors are reported: the file and member they name, and the offset of byte 0 of
/// the JSON text inside that member.
public struct JSONSource: Sendable {
    /// File named in errors.
    public var file: String
    /// Member named in errors.
    public var member: String?
    /// Added to every offset in errors (where the JSON text starts).
    public var baseOffset: Int

    /// A source description for errors.
    public init(file: String = "<json>", member: String? = nil, baseOffset: Int = 0) {
        self.file = file
        self.member = member
        self.baseOffset = baseOffset
    }
}

extension JSONValue {
    /// Parses one JSON document (RFC 8259, no extensions), surrounded only by whitespace.
    /// - Throws: `FormatError` `.corrupt` for invalid UTF-8, syntax errors and (if asked)
    ///   duplicate keys, `.truncated` when the text ends inside a value, `.limit` when nesting
    ///   exceeds `options.maxDepth`; the offset is the offending byte.
    public static func parse(_ bytes: UnsafeRawBufferPointer, options: JSONParseOptions = JSONParseOptions(),
                             source: JSONSource = JSONSource()) throws -> JSONValue {
        var parser = JSONParser(bytes: bytes, options: options, source: source)
        try parser.validateUTF8()
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        try parser.expectEnd()
        return value
    }

    /// Parses a JSON document held in a string.
    /// - Throws: as `parse(_:options:source:)`.
    public static func parse(_ text: String, options: JSONParseOptions = JSONParseOptions(),
                             source: JSONSource = JSONSource()) throws -> JSONValue {
        var copy = text
        return try copy.withUTF8 { try parse(UnsafeRawBufferPointer($0), options: options, source: source) }
    }

    /// Parses a document whose top level must be an object, returning its members in order with
    /// the byte offset of each key's opening quote (relative to `source.baseOffset`), so callers
    /// can point errors at a member.
    /// - Throws: as `parse(_:options:source:)`, and `.corrupt` when the top level is not an object.
    public static func parseObjectMembers(_ bytes: UnsafeRawBufferPointer, options: JSONParseOptions = JSONParseOptions(),
                                          source: JSONSource = JSONSource()) throws -> [(key: String, keyOffset: Int, value: JSONValue)] {
        var parser = JSONParser(bytes: bytes, options: options, source: source)
        try parser.validateUTF8()
        parser.skipWhitespace()
        guard parser.pos < bytes.count else { throw parser.error(.truncated, "empty json text, expected an object") }
        guard bytes[parser.pos] == UInt8(ascii: "{") else {
            let start = parser.pos
            let v = try parser.parseValue(depth: 0)
            throw parser.error(.corrupt, at: start, "json \(v.typeName) where an object was expected")
        }
        var offsets: [Int]? = []
        let members = try parser.parseObjectBody(depth: 1, keyOffsets: &offsets)
        try parser.expectEnd()
        let keyOffsets = offsets ?? []
        return members.indices.map { (members[$0].key, keyOffsets[$0] + source.baseOffset, members[$0].value) }
    }
}

/// The recursive-descent parser; depth is checked before each descent.
private struct JSONParser {
    let bytes: UnsafeRawBufferPointer
    let options: JSONParseOptions
    let source: JSONSource
    var pos = 0
    var scratch: [UInt8] = []

    init(bytes: UnsafeRawBufferPointer, options: JSONParseOptions, source: JSONSource) {
        self.bytes = bytes
        self.options = options
        self.source = source
    }

    func error(_ kind: FormatError.Kind, at offset: Int? = nil, _ message: String) -> FormatError {
        FormatError(kind, file: source.file, member: source.member, offset: source.baseOffset + (offset ?? pos), message)
    }

    /// Describes the byte at `pos` for messages (`'x'`, `byte 0x07`, `end of text`).
    func describeHere() -> String {
        guard pos < bytes.count else { return "end of text" }
        let c = bytes[pos]
        if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x" + String(c, radix: 16)
    }

    /// Rejects invalid UTF-8 anywhere in the text (overlongs, surrogates, > U+10FFFF), as Rust's
    /// `str::from_utf8` does before serde_json sees the header.
    func validateUTF8() throws {
        let n = bytes.count
        var i = 0
        while i < n {
            let c = bytes[i]
            if c < 0x80 { i += 1; continue }
            func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
                i + k < n && bytes[i + k] >= lo && bytes[i + k] <= hi
            }
            let len: Int
            switch c {
            case 0xC2 ... 0xDF: len = cont(1) ? 2 : 0
            case 0xE0: len = cont(1, 0xA0) && cont(2) ? 3 : 0
            case 0xE1 ... 0xEC, 0xEE ... 0xEF: len = cont(1) && cont(2) ? 3 : 0
            case 0xED: len = cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0
            case 0xF0: len = cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0
            case 0xF1 ... 0xF3: len = cont(1) && cont(2) && cont(3) ? 4 : 0
            case 0xF4: len = cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0
            default: len = 0
            }
            guard len > 0 else { throw error(.corrupt, at: i, "invalid utf-8 byte 0x\(String(c, radix: 16)) in json text") }
            i += len
        }
    }

    mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    mutating func expectEnd() throws {
        skipWhitespace()
        guard pos == bytes.count else { throw error(.corrupt, "unexpected \(describeHere()) after the json value, expected end of text") }
    }

    mutating func parseValue(depth: Int) throws -> JSONValue {
        guard pos < bytes.count else { throw error(.truncated, "json text ends where a value was expected") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            guard depth < options.maxDepth else { throw error(.limit, "json nesting deeper than \(options.maxDepth) levels") }
            var offsets: [Int]? = nil
            return .object(try parseObjectBody(depth: depth + 1, keyOffsets: &offsets))
        case UInt8(ascii: "["):
            guard depth < options.maxDepth else { throw error(.limit, "json nesting deeper than \(options.maxDepth) levels") }
            return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"):
            return .number(try parseNumber())
        default:
            throw error(.corrupt, "unexpected \(describeHere()), expected a json value")
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        let w = UnsafeRawBufferPointer(start: word.utf8Start, count: n)
        for k in 0 ..< n {
            guard pos + k < bytes.count else { throw error(.truncated, at: pos + k, "json text ends inside '\(word)'") }
            guard bytes[pos + k] == w[k] else { throw error(.corrupt, at: pos + k, "invalid literal, expected '\(word)'") }
        }
        pos += n
    }

    mutating func parseNumber() throws -> JSONNumber {
        let start = pos
        var p = pos
        if let problem = JSONNumber.scan(bytes, &p) {
            pos = p
            throw error(p >= bytes.count ? .truncated : .corrupt, "invalid number: \(problem), got \(describeHere())")
        }
        pos = p
        return JSONNumber.unchecked(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start ..< p]), as: UTF8.self))
    }

    mutating func hex4() throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0 ..< 4 {
            guard pos < bytes.count else { throw error(.truncated, "json text ends inside a \\u escape") }
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error(.corrupt, "invalid \\u escape: expected a hex digit, got \(describeHere())")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    mutating func appendUTF8(_ s: UInt32) {
        switch s {
        case 0 ..< 0x80:
            scratch.append(UInt8(s))
        case 0x80 ..< 0x800:
            scratch.append(UInt8(0xC0 | (s >> 6)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        case 0x800 ..< 0x10000:
            scratch.append(UInt8(0xE0 | (s >> 12)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        default:
            scratch.append(UInt8(0xF0 | (s >> 18)))
            scratch.append(UInt8(0x80 | ((s >> 12) & 0x3F)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        }
    }

    /// Parses a string at `pos` (which holds `"`). The text was validated as UTF-8 already, so
    /// raw bytes are copied as they are.
    mutating func parseString() throws -> String {
        let open = pos
        pos += 1
        // fast path: no escapes, so the string is the byte range itself
        var end = pos
        while end < bytes.count {
            let d = bytes[end]
            if d == 0x22 || d == 0x5C || d < 0x20 { break }
            end += 1
        }
        if end < bytes.count && bytes[end] == 0x22 {
            let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos ..< end]), as: UTF8.self)
            pos = end + 1
            return s
        }
        scratch.removeAll(keepingCapacity: true)
        while true {
            guard pos < bytes.count else { throw error(.truncated, at: open, "unterminated json string") }
            let c = bytes[pos]
            switch c {
            case UInt8(ascii: "\""):
                pos += 1
                return String(decoding: scratch, as: UTF8.self)
            case UInt8(ascii: "\\"):
                pos += 1
                guard pos < bytes.count else { throw error(.truncated, at: open, "unterminated json string") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): scratch.append(0x22)
                case UInt8(ascii: "\\"): scratch.append(0x5C)
                case UInt8(ascii: "/"): scratch.append(0x2F)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    let escapeStart = pos - 2
                    let u = try hex4()
                    switch u {
                    case 0xD800 ... 0xDBFF:
                        guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                            throw error(.corrupt, at: escapeStart, "lone leading surrogate in \\u escape")
                        }
                        pos += 2
                        let low = try hex4()
                        guard (0xDC00 ... 0xDFFF).contains(low) else {
                            throw error(.corrupt, at: escapeStart, "leading surrogate not followed by a trailing surrogate")
                        }
                        appendUTF8(0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00))
                    case 0xDC00 ... 0xDFFF:
                        throw error(.corrupt, at: escapeStart, "lone trailing surrogate in \\u escape")
                    default:
                        appendUTF8(u)
                    }
                default:
                    pos -= 1
                    throw error(.corrupt, "invalid escape \\\(describeHere()) in json string")
                }
            case 0x00 ..< 0x20:
                throw error(.corrupt, "control character 0x\(String(c, radix: 16)) in json string, expected it escaped")
            default:
                // copy a run of plain bytes at once
                var end = pos + 1
                while end < bytes.count {
                    let d = bytes[end]
                    if d == 0x22 || d == 0x5C || d < 0x20 { break }
                    end += 1
                }
                scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[pos ..< end]))
                pos = end
            }
        }
    }

    mutating func parseArray(depth: Int) throws -> JSONValue {
        pos += 1 // [
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count && bytes[pos] == UInt8(ascii: "]") {
            pos += 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard pos < bytes.count else { throw error(.truncated, "json text ends inside an array") }
            switch bytes[pos] {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "]"):
                pos += 1
                return .array(items)
            default: throw error(.corrupt, "unexpected \(describeHere()) in array, expected ',' or ']'")
            }
        }
    }

    /// Parses an object at `pos` (which holds `{`); appends each key's offset to `keyOffsets`
    /// when it is non-nil.
    mutating func parseObjectBody(depth: Int, keyOffsets: inout [Int]?) throws -> [(key: String, value: JSONValue)] {
        pos += 1 // {
        var members: [(key: String, value: JSONValue)] = []
        var seen = Set<ExactKey>() // filled only when duplicates are rejected
        skipWhitespace()
        if pos < bytes.count && bytes[pos] == UInt8(ascii: "}") {
            pos += 1
            return members
        }
        while true {
            skipWhitespace()
            guard pos < bytes.count else { throw error(.truncated, "json text ends inside an object") }
            guard bytes[pos] == UInt8(ascii: "\"") else {
                throw error(.corrupt, "unexpected \(describeHere()) in object, expected a string key")
            }
            let keyOffset = pos
            let key = try parseString()
            if options.rejectDuplicateKeys && !seen.insert(ExactKey(key)).inserted {
                throw error(.corrupt, at: keyOffset, "duplicate key \(JSONValue.quoted(key, limit: 200)) in json object")
            }
            skipWhitespace()
            guard pos < bytes.count else { throw error(.truncated, "json text ends inside an object") }
            guard bytes[pos] == UInt8(ascii: ":") else {
                throw error(.corrupt, "unexpected \(describeHere()) after object key, expected ':'")
            }
            pos += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            members.append((key, value))
            keyOffsets?.append(keyOffset)
            skipWhitespace()
            guard pos < bytes.count else { throw error(.truncated, "json text ends inside an object") }
            switch bytes[pos] {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "}"):
                pos += 1
                return members
            default: throw error(.corrupt, "unexpected \(describeHere()) in object, expected ',' or '}'")
            }
        }
    }
}

// MARK: - Writing

extension JSONValue {
    /// The value as JSON text: compact (`{"a":[1,2]}`, serde_json's `to_string`) or pretty
    /// (two-space indent, `"key": value`, Python's `json.dumps(indent=2)` layout).
    public func serialized(pretty: Bool = false) -> String {
        String(decoding: serializedBytes(pretty: pretty), as: UTF8.self)
    }

    /// The value as UTF-8 JSON bytes; see `serialized(pretty:)`.
    public func serializedBytes(pretty: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        write(into: &out, pretty: pretty, indent: 0)
        return out
    }

    /// `s` as a JSON string literal, cut to `limit` characters (with `…`) when longer; used to
    /// name keys in one-line error messages.
    public static func quoted(_ s: String, limit: Int = Int.max) -> String {
        var out: [UInt8] = []
        if s.count > limit {
            JSONValue.writeString(String(s.prefix(limit)) + "…", into: &out)
        } else {
            JSONValue.writeString(s, into: &out)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `s` as a JSON string literal, escaping as serde_json does: `"` `\` and control
    /// characters (`\n`, `\t`, …, else `\u00XX`); everything else as raw UTF-8.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        out.append(0x22)
        for c in s.utf8 {
            switch c {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
            case 0x08: out.append(0x5C); out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(0x5C); out.append(UInt8(ascii: "f"))
            case 0x00 ..< 0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hex[Int(c >> 4)])
                out.append(hex[Int(c & 0xF)])
            default: out.append(c)
            }
        }
        out.append(0x22)
    }

    private func write(into out: inout [UInt8], pretty: Bool, indent: Int) {
        func newline(_ level: Int) {
            out.append(0x0A)
            out.append(contentsOf: repeatElement(0x20, count: 2 * level))
        }
        switch self {
        case .null: out.append(contentsOf: Array("null".utf8))
        case let .bool(b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case let .number(n): out.append(contentsOf: Array(n.text.utf8))
        case let .string(s): JSONValue.writeString(s, into: &out)
        case let .array(items):
            out.append(UInt8(ascii: "["))
            for (i, v) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                if pretty { newline(indent + 1) }
                v.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty && !items.isEmpty { newline(indent) }
            out.append(UInt8(ascii: "]"))
        case let .object(members):
            out.append(UInt8(ascii: "{"))
            for (i, m) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                if pretty { newline(indent + 1) }
                JSONValue.writeString(m.key, into: &out)
                out.append(UInt8(ascii: ":"))
                if pretty { out.append(0x20) }
                m.value.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty && !members.isEmpty { newline(indent) }
            out.append(UInt8(ascii: "}"))
        }
    }
}
