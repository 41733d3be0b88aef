import Foundation
import XCTest
@testable import CkptData

/// Readers for fixtures/data (written by generate.py with Pillow and torchvision), and the
/// comparisons the data tests share.
enum DataFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/data")

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    static func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(contentsOf: root.appendingPathComponent(name)))
    }

    static func bytes(_ base64: String) throws -> [UInt8] {
        guard let data = Data(base64Encoded: base64) else { throw DataError(.corrupt, file: "fixture", "bad base64") }
        return [UInt8](data)
    }

    static func floats(_ base64: String) throws -> [Float] {
        let raw = try bytes(base64)
        return stride(from: 0, to: raw.count, by: 4).map { i in
            Float(bitPattern: UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24)
        }
    }

    static func image(_ name: String, channels: Int = 3) throws -> RasterImage {
        try ImageDecoder.decode(contentsOf: path("images/" + name), channels: channels)
    }

    struct DecodeFile: Decodable {
        var pillow: String
        var libjpeg_turbo: String
        var images: [String: DecodeEntry]
    }

    struct DecodeEntry: Decodable {
        var mode: String
        var width: Int
        var height: Int
        var rgb: String?
        var grey: String?
        var labels: String?
        var rgb_sha256: String?
    }

    /// Where two byte arrays first differ and by how much at most, for failure messages.
    static func byteDifference(_ a: [UInt8], _ b: [UInt8]) -> (count: Int, maximum: Int, first: Int?) {
        guard a.count == b.count else { return (max(a.count, b.count), 255, 0) }
        var count = 0, maximum = 0
        var first: Int?
        for i in 0 ..< a.count where a[i] != b[i] {
            count += 1
            maximum = max(maximum, abs(Int(a[i]) - Int(b[i])))
            if first == nil { first = i }
        }
        return (count, maximum, first)
    }

    static func assertBytesEqual(_ got: [UInt8], _ expected: [UInt8], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let d = byteDifference(got, expected)
        XCTAssertEqual(d.count, 0, "\(what): \(d.count) of \(expected.count) bytes differ (max \(d.maximum), first at \(d.first ?? -1))", file: file, line: line)
    }
}
