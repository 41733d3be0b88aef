import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import CkptTrain

// Independent readers for what the training reports write: TFRecord framing with its CRCs and
// the few `tensorflow.Event` fields ckpt uses (decoded by field number and wire type, unknown
// fields skipped), and the SVG as a flat list of XML elements.

/// What a test could not read, with where.
struct ReadFailure: Error, CustomStringConvertible {
    var description: String
}

/// One decoded `Event`.
struct ReadEvent {
    var wallTime: Double?
    var step: Int64 = 0
    var fileVersion: String?
    var writer: String?
    var values: [(tag: String, value: Float)] = []
}

/// Splits `bytes` into TFRecords, checks both masked CRCs of each, and decodes every Event.
func readEvents(_ bytes: [UInt8]) throws -> [ReadEvent] {
    var events: [ReadEvent] = []
    var at = 0
    while at < bytes.count {
        guard bytes.count - at >= 12 else { throw ReadFailure(description: "record at \(at): truncated header") }
        let length = Int(le32(bytes, at)) | Int(le32(bytes, at + 4)) << 32
        guard CRC32C.maskedChecksum(bytes[at ..< at + 8]) == le32(bytes, at + 8) else {
            throw ReadFailure(description: "record at \(at): length crc mismatch")
        }
        guard length >= 0, bytes.count - at - 12 >= length + 4 else { throw ReadFailure(description: "record at \(at): truncated data") }
        let data = Array(bytes[at + 12 ..< at + 12 + length])
        guard CRC32C.maskedChecksum(data) == le32(bytes, at + 12 + length) else {
            throw ReadFailure(description: "record at \(at): data crc mismatch")
        }
        events.append(try decodeEvent(data))
        at += 12 + length + 4
    }
    return events
}

/// Decodes the Event fields 1 (wall_time), 2 (step), 3 (file_version), 5 (summary), 10 (source_metadata).
func decodeEvent(_ data: [UInt8]) throws -> ReadEvent {
    var event = ReadEvent()
    try forEachField(data) { field, value in
        switch (field, value) {
        case let (1, .fixed64(bits)): event.wallTime = Double(bitPattern: bits)
        case let (2, .varint(v)): event.step = Int64(bitPattern: v)
        case let (3, .bytes(b)): event.fileVersion = String(decoding: b, as: UTF8.self)
        case let (5, .bytes(summary)):
            try forEachField(summary) { field, value in
                guard field == 1, case let .bytes(v) = value else { return }
                var tag = "", simple: Float = .nan
                try forEachField(v) { field, value in
                    if field == 1, case let .bytes(t) = value { tag = String(decoding: t, as: UTF8.self) }
                    if field == 2, case let .fixed32(bits) = value { simple = Float(bitPattern: bits) }
                }
                event.values.append((tag, simple))
            }
        case let (10, .bytes(source)):
            try forEachField(source) { field, value in
                if field == 1, case let .bytes(w) = value { event.writer = String(decoding: w, as: UTF8.self) }
            }
        default: throw ReadFailure(description: "unexpected event field \(field): \(value)")
        }
    }
    return event
}

/// A decoded protobuf field value.
enum FieldValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case fixed32(UInt32)
    case bytes([UInt8])
}

/// Calls `body` with each field of the message `data`, in order.
func forEachField(_ data: [UInt8], _ body: (Int, FieldValue) throws -> Void) throws {
    var at = 0
    func varint() throws -> UInt64 {
        var value: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard at < data.count, shift < 64 else { throw ReadFailure(description: "varint at \(at): truncated") }
            let b = data[at]
            at += 1
            value |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return value }
            shift += 7
        }
    }
    func take(_ n: Int) throws -> [UInt8] {
        guard n >= 0, data.count - at >= n else { throw ReadFailure(description: "field at \(at): truncated") }
        defer { at += n }
        return Array(data[at ..< at + n])
    }
    while at < data.count {
        let key = try varint()
        let field = Int(key >> 3)
        switch key & 7 {
        case 0: try body(field, .varint(try varint()))
        case 1: try body(field, .fixed64(try take(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }))
        case 2: try body(field, .bytes(try take(Int(try varint()))))
        case 5: try body(field, .fixed32(le32(try take(4), 0)))
        default: throw ReadFailure(description: "field \(field): unknown wire type \(key & 7)")
        }
    }
}

/// One XML element: name, attributes and the character data directly inside it.
struct SVGNode {
    var name: String
    var attributes: [String: String]
    var text: String
}

/// The elements of a well-formed document in document order; throws when `XMLParser` rejects it.
func parseXML(_ text: String) throws -> [SVGNode] {
    final class Collector: NSObject, XMLParserDelegate {
        var elements: [SVGNode] = []
        var open: [Int] = []
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            open.append(elements.count)
            elements.append(SVGNode(name: name, attributes: attributes, text: ""))
        }
        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            _ = open.popLast()
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if let i = open.last { elements[i].text += string }
        }
    }
    let parser = XMLParser(data: Data(text.utf8))
    let collector = Collector()
    parser.delegate = collector
    guard parser.parse() else {
        throw ReadFailure(description: "not well-formed xml at line \(parser.lineNumber): \(parser.parserError.map { "\($0)" } ?? "?")")
    }
    return collector.elements
}

/// Bytes from hex digits, spaces ignored.
func hexBytes(_ hex: String) -> [UInt8] {
    let digits = Array(hex.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count - 1, by: 2).compactMap { UInt8(String(digits[$0 ... $0 + 1]), radix: 16) }
}
