import XCTest
@testable import CkptFormat

final class JSONTests: XCTestCase {
    private func parse(_ bytes: [UInt8], _ options: JSONParseOptions = JSONParseOptions()) throws -> JSONValue {
        try bytes.withUnsafeBytes { try JSONValue.parse($0, options: options, source: JSONSource(file: "x.json", member: "m", baseOffset: 100)) }
    }

    private func parse(_ text: String, _ options: JSONParseOptions = JSONParseOptions()) throws -> JSONValue {
        try parse(Array(text.utf8), options)
    }

    /// Asserts that parsing fails with `kind` at absolute offset `offset` (base 100 included).
    private func assertFails(_ text: String, _ kind: FormatError.Kind, offset: Int? = nil, contains: String? = nil,
                             _ options: JSONParseOptions = JSONParseOptions(), file: StaticString = #filePath, line: UInt = #line) {
        assertFails(Array(text.utf8), kind, offset: offset, contains: contains, options, file: file, line: line)
    }

    private func assertFails(_ bytes: [UInt8], _ kind: FormatError.Kind, offset: Int? = nil, contains: String? = nil,
                             _ options: JSONParseOptions = JSONParseOptions(), file: StaticString = #filePath, line: UInt = #line) {
        do {
            let v = try parse(bytes, options)
            XCTFail("parsed \(v) but expected a \(kind) error", file: file, line: line)
        } catch let e as FormatError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertEqual(e.file, "x.json", file: file, line: line)
            XCTAssertEqual(e.member, "m", file: file, line: line)
            if let o = offset { XCTAssertEqual(e.offset, o, "\(e)", file: file, line: line) }
            if let c = contains { XCTAssertTrue(e.message.contains(c), "\(e.message) lacks \(c)", file: file, line: line) }
            XCTAssertFalse(e.description.contains("\n"), file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    func testScalars() throws {
        XCTAssertEqual(try parse("null"), .null)
        XCTAssertEqual(try parse(" true "), .bool(true))
        XCTAssertEqual(try parse("\tfalse\r\n"), .bool(false))
        XCTAssertEqual(try parse("\"hi\""), .string("hi"))
        XCTAssertEqual(try parse("-12").numberValue?.intValue, -12)
        XCTAssertEqual(try parse("0").numberValue?.intValue, 0)
        XCTAssertEqual(try parse("3.25e2").numberValue?.doubleValue, 325)
        XCTAssertEqual(try parse("1E-2").numberValue?.doubleValue, 0.01)
        XCTAssertEqual(try parse("3.25e2").numberValue?.intValue, nil)
        XCTAssertEqual(try parse("-0.5").numberValue?.text, "-0.5")
    }

    func testLargeIntegersStayExact() throws {
        let n = try XCTUnwrap(try parse("18446744073709551615").numberValue)
        XCTAssertEqual(n.uint64Value, UInt64.max)
        XCTAssertNil(n.intValue)
        XCTAssertTrue(n.isInteger)
        XCTAssertEqual(try parse("9223372036854775807").numberValue?.intValue, Int.max)
        XCTAssertEqual(try parse("-9223372036854775808").numberValue?.intValue, Int.min)
        XCTAssertEqual(try parse("9007199254740993").numberValue?.uint64Value, 9_007_199_254_740_993) // 2^53+1, not a double
        XCTAssertNil(try parse("18446744073709551616").numberValue?.uint64Value)
        XCTAssertEqual(try parse("18446744073709551616").numberValue?.text, "18446744073709551616")
        XCTAssertNil(try parse("-1").numberValue?.uint64Value)
        XCTAssertEqual(try parse("[18446744073709551615]").serialized(), "[18446744073709551615]")
    }

    func testObjectKeepsOrderAndDuplicates() throws {
        let v = try parse(#"{"z": 1, "a": [true, null], "m": {}, "a": "x"}"#)
        guard case let .object(members) = v else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.key), ["z", "a", "m", "a"])
        XCTAssertEqual(members[1].value, .array([.bool(true), .null]))
        XCTAssertEqual(members[2].value, .object([]))
        XCTAssertEqual(v["a"], .array([.bool(true), .null]))
        XCTAssertEqual(v.firstDuplicateKey?.key, "a")
        XCTAssertEqual(v.firstDuplicateKey?.index, 3)
        XCTAssertNil(try parse(#"{"a":1,"b":2}"#).firstDuplicateKey)
    }

    func testDuplicateKeysRejectedWhenAsked() {
        let text = #"{"a": 1, "b": {"c": 1, "c": 2}}"#
        // the second "c" is at byte 23 of the text
        assertFails(text, .corrupt, offset: 100 + 23, contains: "duplicate key \"c\"", JSONParseOptions(rejectDuplicateKeys: true))
        XCTAssertNoThrow(try parse(text))
    }

    func testObjectMembersWithKeyOffsets() throws {
        let text = #" {"a": 1,  "bb": [2]}"#
        let members = try Array(text.utf8).withUnsafeBytes {
            try JSONValue.parseObjectMembers($0, source: JSONSource(file: "f", member: "h", baseOffset: 8))
        }
        XCTAssertEqual(members.map(\.key), ["a", "bb"])
        XCTAssertEqual(members.map(\.keyOffset), [8 + 2, 8 + 11])
        XCTAssertEqual(members[1].value, .array([.int(2)]))
        XCTAssertThrowsError(try Array("[1]".utf8).withUnsafeBytes { try JSONValue.parseObjectMembers($0) }) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .corrupt)
            XCTAssertTrue((e as? FormatError)?.message.contains("array") ?? false)
        }
    }

    func testStringEscapes() throws {
        XCTAssertEqual(try parse(#""a\"b\\c\/d\b\f\n\r\t""#), .string("a\"b\\c/d\u{8}\u{c}\n\r\t"))
        XCTAssertEqual(try parse(#""\u00e9\u4E2D""#), .string("é中"))
        XCTAssertEqual(try parse(#""\ud83d\ude00""#), .string("😀"))
        XCTAssertEqual(try parse("\"é😀\""), .string("é😀"))
        XCTAssertEqual(try parse(#""\u0000""#), .string("\u{0}"))
    }

    func testStringErrors() {
        assertFails(#""\ud83d""#, .corrupt, offset: 101, contains: "surrogate")
        assertFails(#""\ude00""#, .corrupt, offset: 101, contains: "surrogate")
        assertFails(#""\ud83d\u0041""#, .corrupt, contains: "surrogate")
        assertFails(#""\x""#, .corrupt, offset: 102, contains: "escape")
        assertFails(#""\u12g4""#, .corrupt, offset: 105, contains: "hex")
        assertFails("\"a\nb\"", .corrupt, offset: 102, contains: "control character")
        assertFails("\"abc", .truncated, offset: 100, contains: "unterminated")
    }

    func testInvalidUTF8IsRejectedWithOffset() {
        assertFails([0x22, 0x61, 0xC0, 0x80, 0x22], .corrupt, offset: 102, contains: "utf-8") // overlong NUL
        assertFails([0x22, 0xED, 0xA0, 0x80, 0x22], .corrupt, offset: 101, contains: "utf-8") // encoded surrogate
        assertFails([0x22, 0xF5, 0x80, 0x80, 0x80, 0x22], .corrupt, offset: 101, contains: "utf-8") // > U+10FFFF
        assertFails([0x22, 0xE4, 0xB8, 0x22], .corrupt, offset: 101, contains: "utf-8") // cut sequence
        assertFails([0x22, 0x80, 0x22], .corrupt, offset: 101, contains: "utf-8") // lone continuation
        assertFails([0x5B, 0x31, 0x5D, 0xFF], .corrupt, offset: 103, contains: "utf-8") // after the value
    }

    func testSyntaxErrors() {
        assertFails("", .truncated, offset: 100)
        assertFails("   ", .truncated, offset: 103)
        assertFails("[1,]", .corrupt, offset: 103)
        assertFails("[1 2]", .corrupt, offset: 103, contains: "expected ',' or ']'")
        assertFails(#"{"a" 1}"#, .corrupt, offset: 105, contains: "expected ':'")
        assertFails(#"{"a":1,}"#, .corrupt, offset: 107, contains: "string key")
        assertFails("{1:2}", .corrupt, offset: 101)
        assertFails("[1", .truncated)
        assertFails(#"{"a":"#, .truncated)
        assertFails("01", .corrupt, offset: 101, contains: "leading zero")
        assertFails("1.", .truncated)
        assertFails("1.e5", .corrupt, offset: 102)
        assertFails("+1", .corrupt, offset: 100)
        assertFails(".5", .corrupt, offset: 100)
        assertFails("NaN", .corrupt, offset: 100)
        assertFails("Infinity", .corrupt)
        assertFails("tru", .truncated)
        assertFails("nul1", .corrupt, offset: 103)
        assertFails("true false", .corrupt, offset: 105, contains: "after the json value")
        assertFails("[1]]", .corrupt, offset: 103)
        assertFails("'a'", .corrupt, offset: 100)
        assertFails("[1,\u{0C}2]", .corrupt) // form feed is not json whitespace
    }

    func testDepthLimit() throws {
        let ok = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        XCTAssertNoThrow(try parse(ok))
        let deep = String(repeating: "[", count: 129) + String(repeating: "]", count: 129)
        assertFails(deep, .limit, offset: 100 + 128, contains: "nesting")
        // 100k unclosed brackets: refused at the limit, no deep recursion
        assertFails(String(repeating: "[", count: 100_000), .limit, offset: 100 + 128)
        assertFails(String(repeating: #"{"a":"#, count: 100_000), .limit)
        assertFails("[" + String(repeating: "[", count: 10), .limit, contains: "4", JSONParseOptions(maxDepth: 4))
    }

    func testCompactWriter() {
        let v: JSONValue = .object([
            ("b", .array([.int(1), .int(-2), .double(0.5), .null, .bool(true)])),
            ("a", .object([])),
            ("", .array([])),
            ("q\"\\\n\u{1}é", .string("tab\there\u{7F}")),
        ])
        XCTAssertEqual(v.serialized(), #"{"b":[1,-2,0.5,null,true],"a":{},"":[],"q\"\\\n\u0001é":"tab\there"# + "\u{7F}\"}")
        XCTAssertEqual(JSONValue.double(.nan), .null)
        XCTAssertEqual(JSONValue.double(.infinity).serialized(), "null")
        XCTAssertEqual(JSONValue.double(1e-5).serialized(), "1e-05")
        XCTAssertEqual(JSONValue.number(JSONNumber(UInt64.max)).serialized(), "18446744073709551615")
        XCTAssertNil(JSONNumber(text: "01"))
        XCTAssertNil(JSONNumber(text: "1e"))
        XCTAssertEqual(JSONNumber(text: "-1.5E+3")?.doubleValue, -1500)
    }

    func testPrettyWriter() {
        let v: JSONValue = .object([("a", .array([.int(1), .object([("b", .null)])])), ("c", .array([])), ("d", .object([]))])
        let expected = """
        {
          "a": [
            1,
            {
              "b": null
            }
          ],
          "c": [],
          "d": {}
        }
        """
        XCTAssertEqual(v.serialized(pretty: true), expected)
        XCTAssertEqual(JSONValue.string("x").serialized(pretty: true), "\"x\"")
    }

    func testRoundTrip() throws {
        let v: JSONValue = .object([
            ("name", .string("conv1.weight \u{0}\u{1F}\u{2028}😀")),
            ("shape", .array([.int(64), .int(3), .int(7), .int(7)])),
            ("big", .number(JSONNumber(UInt64.max))),
            ("x", .double(-1.25e-300)),
            ("nested", .array([.array([.object([("k", .bool(false))])])])),
        ])
        XCTAssertEqual(try parse(v.serialized()), v)
        XCTAssertEqual(try parse(v.serialized(pretty: true)), v)
        XCTAssertEqual(try JSONValue.parse(v.serialized()), v)
    }

    func testQuotedShortensLongNames() {
        XCTAssertEqual(JSONValue.quoted("a\nb"), #""a\nb""#)
        XCTAssertEqual(JSONValue.quoted(String(repeating: "x", count: 10), limit: 3), "\"xxx…\"")
    }
}
