import Foundation
import XCTest
@testable import CkptFormat
import CkptTensor

// Hostile-input items 39–42 and valid layouts of item 44 (docs/hostile-inputs.md §3), built as
// in-memory files; plus writer round trips, the official writer's layout, and AtomicFileWriter.

/// A safetensors file: `length` (default: the header's byte count) as u64 LE, `header`, `data`.
private func stFile(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    stFile(Array(header.utf8), data: data, length: length)
}

private func stFile(_ header: [UInt8], data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    let n = length ?? UInt64(header.count)
    var out = (0 ..< 8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
    out += header
    out += data
    return out
}

private func readST(_ bytes: [UInt8]) throws -> Checkpoint {
    try Safetensors.read(ByteRegion(bytes), file: "t.safetensors")
}

/// The tensors of a checkpoint's root dict, in order.
private func rootTensors(_ c: Checkpoint) -> [(String, Tensor)] {
    guard case let .dict(d) = c.root else { return [] }
    return d.items.compactMap { item in
        guard case let .string(k) = item.key, case let .tensor(t) = item.value else { return nil }
        return (k, t)
    }
}

private func tempDir() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-st-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

final class SafetensorsReadTests: XCTestCase {
    /// Asserts that reading `bytes` fails with `kind`, naming `member` (and the member's text in
    /// the one-line description).
    private func assertRefused(_ bytes: [UInt8], _ kind: FormatError.Kind, member: String, offset: Int? = nil,
                               contains: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let c = try readST(bytes)
            XCTFail("read \(c.tensors.count) tensors, expected a \(kind) error", file: file, line: line)
        } catch let e as FormatError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertEqual(e.file, "t.safetensors", file: file, line: line)
            XCTAssertEqual(e.member, member, "\(e)", file: file, line: line)
            XCTAssertNotNil(e.offset, file: file, line: line)
            if let o = offset { XCTAssertEqual(e.offset, o, "\(e)", file: file, line: line) }
            if let c = contains { XCTAssertTrue(e.message.contains(c), "\(e.message) lacks \(c)", file: file, line: line) }
            XCTAssertTrue(e.description.hasPrefix("t.safetensors: \(member)+0x"), e.description, file: file, line: line)
            XCTAssertFalse(e.description.contains("\n"), file: file, line: line)
            XCTAssertFalse(e.message.first?.isUppercase ?? true, "message should start lower-case: \(e.message)", file: file, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    private let f32x2 = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
    private let eight: [UInt8] = [0, 0, 128, 63, 0, 0, 0, 64] // 1.0, 2.0

    // MARK: 39: lengths

    func testValidBaseline() throws {
        let c = try readST(stFile(f32x2, data: eight))
        let ts = rootTensors(c)
        XCTAssertEqual(ts.map(\.0), ["w"])
        XCTAssertEqual(ts[0].1.dtype, .float32)
        XCTAssertEqual(ts[0].1.shape, [2])
        XCTAssertEqual(try ts[0].1.contiguousBytes(), eight)
        XCTAssertEqual(try ts[0].1.floats(), [1, 2])
        XCTAssertEqual(c.info.format, .safetensors)
        XCTAssertTrue(c.info.metadata.isEmpty)
    }

    func testHeaderLengthPastEOF() {
        assertRefused(stFile(f32x2, data: eight, length: 1000), .truncated, member: "header", offset: 0, contains: "1008")
    }

    func testHeaderLengthMax() {
        assertRefused(stFile(f32x2, data: eight, length: UInt64.max), .limit, member: "header", offset: 0, contains: "18446744073709551615")
    }

    func testHeaderLengthOverCap() {
        assertRefused(stFile(f32x2, data: eight, length: 100_000_001), .limit, member: "header", offset: 0, contains: "100000001")
        // exactly at the cap is allowed by the cap, so the file size decides
        assertRefused(stFile(f32x2, data: eight, length: 100_000_000), .truncated, member: "header", offset: 0)
    }

    func testFileShorterThanEightBytes() {
        for n in 0 ..< 8 {
            assertRefused(Array(repeating: 0, count: n), .truncated, member: "header", offset: 0, contains: "\(n) bytes")
        }
    }

    func testHeaderLengthZero() {
        assertRefused(stFile("", data: []), .corrupt, member: "header", offset: 8, contains: "'{'")
        assertRefused(stFile("", data: Array("{}".utf8)), .corrupt, member: "header", offset: 8)
    }

    func testTruncatedHeader() {
        let full = stFile(f32x2, data: eight)
        assertRefused(Array(full.prefix(20)), .truncated, member: "header", offset: 0)
    }

    func testTruncatedData() {
        let full = stFile(f32x2, data: eight)
        assertRefused(Array(full.dropLast(3)), .truncated, member: "w", offset: 9, contains: "holds 5 bytes")
    }

    func testEveryTruncationThrows() {
        let full = stFile(#"{"__metadata__":{"a":"b"},"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                          data: Array(0 ..< 16))
        XCTAssertNoThrow(try readST(full))
        for n in 0 ..< full.count {
            XCTAssertThrowsError(try readST(Array(full.prefix(n))), "prefix \(n)") { e in
                XCTAssertNotNil(e as? FormatError)
            }
        }
    }

    // MARK: 40: header text

    func testMalformedJSON() {
        assertRefused(stFile(#"{"w" {"dtype":"F32"}}"#), .corrupt, member: "header", offset: 8 + 5, contains: "':'")
        assertRefused(stFile(#"{"w":{"dtype":"F32","#), .corrupt, member: "header")
        assertRefused(stFile(#"{"w":1}}"#), .corrupt, member: "header", offset: 8 + 7)
        assertRefused(stFile("{}\0\0\0\0\0\0"), .corrupt, member: "header", offset: 10) // NUL padding is not whitespace
    }

    func testHeaderIsAnArray() {
        assertRefused(stFile(#"[{"dtype":"F32","shape":[0],"data_offsets":[0,0]}]"#), .corrupt, member: "header", offset: 8, contains: "'['")
        // leading JSON whitespace is allowed, as the reference implementation allows it; other bytes are not
        XCTAssertEqual(try Safetensors.read(ByteRegion(stFile(#"  {}"#)), file: "ws").tensors.count, 0)
        assertRefused(stFile("\u{0B}{}"), .corrupt, member: "header", offset: 8, contains: "'{'")
        assertRefused(stFile(#""x""#), .corrupt, member: "header", offset: 8)
    }

    func testInvalidUTF8() {
        var header = Array(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.utf8)
        header[2] = 0xFF // inside the key
        assertRefused(stFile(header, data: eight), .corrupt, member: "header", offset: 8 + 2, contains: "utf-8")
        let overlong = Array(#"{"__metadata__":{"k":""#.utf8) + [0xC1, 0xBF] + Array(#""}}"#.utf8)
        assertRefused(stFile(overlong), .corrupt, member: "header", contains: "utf-8")
    }

    func testDeeplyNestedMetadata() {
        let header = #"{"__metadata__":"# + String(repeating: "[", count: 100_000)
        assertRefused(stFile(header), .limit, member: "header", contains: "nesting")
        let closed = #"{"__metadata__":{"k":"# + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}}"
        assertRefused(stFile(closed), .limit, member: "header")
    }

    func testNonStringMetadata() {
        assertRefused(stFile(#"{"__metadata__":{"format":"pt","epoch":3}}"#), .corrupt, member: "header", offset: 9, contains: "\"epoch\"")
        assertRefused(stFile(#"{"__metadata__":{"a":null}}"#), .corrupt, member: "header", contains: "null")
        assertRefused(stFile(#"{"__metadata__":{"a":{"b":"c"}}}"#), .corrupt, member: "header", contains: "object")
        assertRefused(stFile(#"{"__metadata__":["a"]}"#), .corrupt, member: "header", contains: "array")
        assertRefused(stFile(#"{"__metadata__":"pt"}"#), .corrupt, member: "header", contains: "string")
        assertRefused(stFile(#"{"__metadata__":{"a":"1","a":"2"}}"#), .corrupt, member: "header", contains: "duplicate")
    }

    func testMissingFields() {
        assertRefused(stFile(#"{"w":{"shape":[2],"data_offsets":[0,8]}}"#, data: eight), .corrupt, member: "w", offset: 9, contains: "no dtype")
        assertRefused(stFile(#"{"w":{"dtype":"F32","data_offsets":[0,8]}}"#, data: eight), .corrupt, member: "w", contains: "no shape")
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2]}}"#, data: eight), .corrupt, member: "w", contains: "no data_offsets")
        assertRefused(stFile(#"{"w":[1,2]}"#), .corrupt, member: "w", contains: "array")
        assertRefused(stFile(#"{"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, data: eight), .corrupt, member: "w", contains: "number")
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}"#, data: eight), .corrupt, member: "w", contains: "shape")
        assertRefused(stFile(#"{"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: eight),
                      .corrupt, member: "w", contains: "duplicate field")
    }

    func testUnknownDType() {
        assertRefused(stFile(#"{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 16)),
                      .unsupported, member: "w", offset: 9, contains: "unknown dtype \"F128\"")
        assertRefused(stFile(#"{"w":{"dtype":"C128","shape":[1],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 16)),
                      .unsupported, member: "w", contains: "C128")
    }

    func testLowercaseDType() {
        assertRefused(stFile(#"{"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}"#, data: eight),
                      .unsupported, member: "w", contains: "unknown dtype \"f32\"")
    }

    func testSubByteDTypesUnsupported() {
        for code in ["F4", "F6_E2M3", "F6_E3M2"] {
            assertRefused(stFile(#"{"packed":{"dtype":"\#(code)","shape":[2],"data_offsets":[0,1]}}"#, data: [0]),
                          .unsupported, member: "packed", contains: code)
        }
    }

    // MARK: 41: offsets

    func testOverlappingFull() {
        let h = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        assertRefused(stFile(h, data: eight), .corrupt, member: "b", contains: "overlaps")
    }

    func testOverlappingPartial() {
        let h = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertRefused(stFile(h, data: Array(repeating: 1, count: 12)), .corrupt, member: "b", contains: "overlaps")
    }

    func testReversedOffsets() {
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: eight),
                      .corrupt, member: "w", contains: "reversed")
    }

    func testGap() {
        let h = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        assertRefused(stFile(h, data: Array(repeating: 0, count: 12)), .corrupt, member: "b", contains: "gap of 4 bytes")
        // a first tensor that does not start at 0
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: eight), .corrupt, member: "w", contains: "gap")
    }

    func testOffsetsPastEOF() {
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[256],"data_offsets":[0,1024]}}"#, data: eight),
                      .truncated, member: "w", contains: "past the end")
    }

    func testThreeOffsets() {
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}"#, data: eight),
                      .corrupt, member: "w", contains: "3 items")
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}}"#, data: eight),
                      .corrupt, member: "w", contains: "1 items")
    }

    func testFloatOffsets() {
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0.0,8.0]}}"#, data: eight),
                      .corrupt, member: "w", contains: "not an integer")
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8e0]}}"#, data: eight),
                      .corrupt, member: "w", contains: "not an integer")
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}"#, data: eight),
                      .corrupt, member: "w", contains: "string")
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#, data: eight),
                      .corrupt, member: "w", contains: "negative")
    }

    func testTrailingBytes() {
        assertRefused(stFile(f32x2, data: eight + [0]), .corrupt, member: "header", offset: 8 + f32x2.utf8.count + 8, contains: "1 trailing bytes")
        assertRefused(stFile("{}", data: [1, 2, 3]), .corrupt, member: "header", offset: 10, contains: "3 trailing bytes")
    }

    func testZipAppendedPolyglot() {
        var zip: [UInt8] = [0x50, 0x4B, 0x03, 0x04] + Array(repeating: 0, count: 26) + Array("data.pkl".utf8)
        zip += [0x50, 0x4B, 0x05, 0x06] + Array(repeating: 0, count: 18)
        assertRefused(stFile(f32x2, data: eight + zip), .corrupt, member: "header", contains: "trailing bytes")
    }

    // MARK: 42: shapes

    func testSizeMismatch() {
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: eight),
                      .corrupt, member: "w", contains: "needs 12")
        assertRefused(stFile(#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}"#, data: eight),
                      .corrupt, member: "w", contains: "needs 16")
    }

    func testElementCountOverflow() {
        assertRefused(stFile(#"{"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#),
                      .limit, member: "w", contains: "element count")
    }

    func testByteCountOverflow() {
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}"#),
                      .limit, member: "w", contains: "byte count")
    }

    func testWrapToExactlyTheBytesPresent() {
        // (2^61+1) × 8 = 2^64 + 8 wraps to 8 in unchecked u64 arithmetic
        assertRefused(stFile(#"{"w":{"dtype":"F64","shape":[2305843009213693953],"data_offsets":[0,8]}}"#, data: eight),
                      .limit, member: "w", contains: "overflows")
        // 2^32 × 2^32 × 1 wraps to 0: a zero-byte tensor that claims 2^64 elements
        assertRefused(stFile(#"{"w":{"dtype":"U8","shape":[4294967296,4294967296,1],"data_offsets":[0,0]}}"#),
                      .limit, member: "w", contains: "overflows")
    }

    func testNegativeDim() {
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: eight),
                      .corrupt, member: "w", contains: "negative")
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, data: eight),
                      .corrupt, member: "w", contains: "not an integer")
        assertRefused(stFile(#"{"w":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}}"#, data: eight),
                      .corrupt, member: "w", contains: "exceeds")
    }

    func testDuplicateNames() {
        let h = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        assertRefused(stFile(h, data: eight), .corrupt, member: "w", offset: 8 + 54, contains: "duplicate tensor name \"w\"")
        assertRefused(stFile(#"{"__metadata__":{},"__metadata__":{}}"#), .corrupt, member: "__metadata__", contains: "duplicate")
    }

    func testAwkwardNamesStayOnOneLine() {
        let h = #"{"a\nb":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        assertRefused(stFile(h, data: eight), .corrupt, member: #""a\nb""#)
    }

    // MARK: 44: valid layouts

    func testUnorderedKeysLoadInOffsetOrder() throws {
        let h = #"{"z":{"dtype":"U8","shape":[2],"data_offsets":[12,14]},"__metadata__":{"format":"pt","b":"x"},"# +
            #""a":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]},"m":{"dtype":"I32","shape":[],"data_offsets":[0,4]}}"#
        let data: [UInt8] = [7, 0, 0, 0] + eight + [200, 1]
        let c = try readST(stFile(h, data: data))
        let ts = rootTensors(c)
        XCTAssertEqual(ts.map(\.0), ["m", "a", "z"])
        XCTAssertEqual(ts[0].1.shape, [])
        XCTAssertEqual(ts[0].1.dtype, .int32)
        XCTAssertEqual(try ts[0].1.contiguousBytes(), [7, 0, 0, 0])
        XCTAssertEqual(ts[1].1.shape, [1, 2])
        XCTAssertEqual(ts[1].1.strides, [2, 1])
        XCTAssertEqual(try ts[1].1.contiguousBytes(), eight)
        XCTAssertEqual(try ts[2].1.contiguousBytes(), [200, 1])
        XCTAssertEqual(c.info.metadata.map(\.key), ["format", "b"])
        XCTAssertEqual(c.info.metadata.map(\.value), ["pt", "x"])
        XCTAssertEqual(c.tensors.map(\.path), ["m", "a", "z"])
        // storages are per tensor, keyed by name, with the declared byte count
        XCTAssertEqual(ts[1].1.storage.key, "a")
        XCTAssertEqual(ts[1].1.storage.byteCount, 8)
        XCTAssertEqual(ts[1].1.storage.dtype, .float32)
    }

    func testZeroCopy() throws {
        let bytes = stFile(f32x2, data: eight)
        let region = ByteRegion(bytes)
        let c = try Safetensors.read(region, file: "t.safetensors")
        let t = try XCTUnwrap(rootTensors(c).first?.1)
        XCTAssertFalse(t.storage.isLoaded)
        let slice = try t.storage.slice()
        XCTAssertTrue(slice.region === region)
        XCTAssertEqual(slice.offset, 8 + f32x2.utf8.count)
        XCTAssertEqual(slice.count, 8)
    }

    func testPaddedAndUnpaddedHeaders() throws {
        let unpadded = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"# // 54 bytes
        XCTAssertEqual(unpadded.utf8.count, 54)
        XCTAssertEqual(rootTensors(try readST(stFile(unpadded, data: eight))).count, 1)
        let padded = unpadded + String(repeating: " ", count: 2)
        XCTAssertEqual(padded.utf8.count % 8, 0)
        XCTAssertEqual(try rootTensors(try readST(stFile(padded, data: eight)))[0].1.contiguousBytes(), eight)
        XCTAssertEqual(rootTensors(try readST(stFile(unpadded + "\n\t\r ", data: eight))).count, 1)
    }

    func testEmptyFile() throws {
        let c = try readST(stFile("{}"))
        XCTAssertTrue(rootTensors(c).isEmpty)
        guard case let .dict(d) = c.root else { return XCTFail("root is not a dict") }
        XCTAssertEqual(d.kind, .dict)
        XCTAssertTrue(d.items.isEmpty)
        // what the official writer emits for an empty dict: "{}" + 6 spaces
        XCTAssertTrue(try readST(stFile("{}      ")).tensors.isEmpty)
        XCTAssertEqual(try readST(stFile(#"{"__metadata__":{"format":"pt"}}"#)).info.metadata.first?.value, "pt")
        XCTAssertTrue(try readST(stFile(#"{"__metadata__":null}"#)).info.metadata.isEmpty)
    }

    func testZeroSizedTensorsAndExtraFields() throws {
        let h = #"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0],"note":"x"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"# +
            #""z":{"dtype":"I64","shape":[0],"data_offsets":[8,8]}}"#
        let ts = rootTensors(try readST(stFile(h, data: eight)))
        XCTAssertEqual(ts.map(\.0), ["e", "w", "z"])
        XCTAssertEqual(ts[0].1.shape, [0, 3])
        XCTAssertEqual(try ts[0].1.contiguousBytes(), [])
        XCTAssertEqual(try ts[2].1.contiguousBytes(), [])
    }

    func testEveryDTypeCodeLoads() throws {
        for dtype in DType.allCases {
            guard let code = dtype.safetensorsCode else { continue }
            let n = 3 * dtype.itemSize
            let data = (0 ..< n).map { UInt8(($0 * 37 + 11) & 0xFF) }
            let c = try readST(stFile(#"{"t":{"dtype":"\#(code)","shape":[3],"data_offsets":[0,\#(n)]}}"#, data: data))
            let t = try XCTUnwrap(rootTensors(c).first?.1)
            XCTAssertEqual(t.dtype, dtype, code)
            XCTAssertEqual(try t.contiguousBytes(), data, code)
        }
    }

    func testLooksLikeSafetensors() {
        let good = stFile(f32x2, data: eight)
        XCTAssertTrue(good.withUnsafeBytes { Safetensors.looksLikeSafetensors($0) })
        XCTAssertFalse(Array(good.prefix(20)).withUnsafeBytes { Safetensors.looksLikeSafetensors($0) })
        XCTAssertTrue(Array(good.prefix(20)).withUnsafeBytes { Safetensors.looksLikeSafetensors(prefix: $0, fileSize: good.count) })
        XCTAssertFalse(stFile(f32x2, data: eight, length: 100_000_001).withUnsafeBytes { Safetensors.looksLikeSafetensors($0) })
        XCTAssertFalse(stFile("[]").withUnsafeBytes { Safetensors.looksLikeSafetensors($0) })
        XCTAssertFalse([UInt8](repeating: 0, count: 8).withUnsafeBytes { Safetensors.looksLikeSafetensors($0) })
        let zip: [UInt8] = [0x50, 0x4B, 0x03, 0x04] + Array(repeating: 0, count: 60)
        XCTAssertFalse(zip.withUnsafeBytes { Safetensors.looksLikeSafetensors($0) })
    }
}

final class SafetensorsWriteTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws { dir = try tempDir() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private func files() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    private func read(_ path: String) throws -> Checkpoint {
        try Safetensors.read(try ByteRegion.map(path: path), file: path)
    }

    /// Deterministic bytes valid for `dtype` (bool elements are 0 or 1).
    private func sample(_ dtype: DType, count: Int, seed: Int) -> [UInt8] {
        (0 ..< count * dtype.itemSize).map { i in
            dtype == .bool ? UInt8((i + seed) % 2) : UInt8(truncatingIfNeeded: i &* 131 &+ seed &* 17 &+ 5)
        }
    }

    func testOfficialLayoutOfOneTensor() throws {
        // the reference test vector: {"attn.0": F32 [1,2,3] = 0..5}
        let data = [Float](arrayLiteral: 0, 1, 2, 3, 4, 5).withUnsafeBytes { Array($0) }
        let t = try Tensor(dtype: .float32, shape: [1, 2, 3], bytes: data)
        let path = dir + "/a.safetensors"
        try SafetensorsWriter.write([("attn.0", t)], metadata: [], to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let header = #"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#
        XCTAssertEqual(header.utf8.count, 64)
        XCTAssertEqual(bytes, [64, 0, 0, 0, 0, 0, 0, 0] + Array(header.utf8) + data)

        // a shorter name forces 7 bytes of space padding
        try SafetensorsWriter.write([("attn0", try Tensor(dtype: .float32, shape: [1, 1, 2, 3], bytes: data))], metadata: [], to: path)
        let padded = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let h2 = #"{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}"# + "       "
        XCTAssertEqual(padded, [72, 0, 0, 0, 0, 0, 0, 0] + Array(h2.utf8) + data)
        XCTAssertEqual(try files(), ["a.safetensors"])
    }

    func testEmptyAndMetadataHeaders() throws {
        XCTAssertEqual(try SafetensorsWriter.header(for: [], metadata: []), Array("{}      ".utf8))
        XCTAssertEqual(try SafetensorsWriter.header(for: [], metadata: [("framework", "pt")]),
                       Array(#"{"__metadata__":{"framework":"pt"}}     "#.utf8))
        let path = dir + "/e.safetensors"
        try SafetensorsWriter.write([], metadata: [("format", "pt"), ("note", "a \"quoted\"\nline")], to: path)
        let c = try read(path)
        XCTAssertTrue(c.tensors.isEmpty)
        XCTAssertEqual(c.info.metadata.map(\.key), ["format", "note"])
        XCTAssertEqual(c.info.metadata.map(\.value), ["pt", "a \"quoted\"\nline"])
    }

    func testOrderIsDTypeDescendingThenName() throws {
        let specs: [(String, DType)] = [
            ("b", .float32), ("a", .float32), ("c", .float64), ("d", .uint8), ("f", .float16), ("e", .bfloat16),
            ("z", .complex64), ("y", .int64), ("x", .uint64), ("B", .float32), ("ab", .float32), ("m", .bool), ("n", .int8),
            ("q", .float8_e4m3fn), ("r", .float8_e5m2), ("s", .uint16), ("t", .int16),
        ]
        let tensors = try specs.map { ($0.0, try Tensor(dtype: $0.1, shape: [1], bytes: sample($0.1, count: 1, seed: 1))) }
        let path = dir + "/o.safetensors"
        try SafetensorsWriter.write(tensors, metadata: [("format", "pt")], to: path)
        let c = try read(path)
        // reference enum order, descending: U64 I64 F64 C64 F32 BF16 F16 U16 I16 F8_E4M3 F8_E5M2 I8 U8 BOOL
        XCTAssertEqual(c.tensors.map(\.path), ["x", "y", "c", "z", "B", "a", "ab", "b", "e", "f", "s", "t", "q", "r", "n", "d", "m"])
        // 8-byte dtypes first, so every tensor's offset is a multiple of its item size
        var offset = 8 + Int(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(8).enumerated()
            .reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        XCTAssertEqual(offset % 8, 0)
        for (_, t) in c.tensors {
            XCTAssertEqual(try t.storage.slice().offset, offset)
            XCTAssertEqual(offset % t.dtype.itemSize, 0)
            offset += t.byteCount
        }
    }

    func testRoundTripEveryDType() throws {
        var tensors: [(name: String, tensor: Tensor)] = []
        var expected: [String: [UInt8]] = [:]
        for (i, dtype) in DType.allCases.enumerated() where dtype.safetensorsCode != nil {
            for (j, shape) in [[2, 3], [], [0, 4], [5]].enumerated() {
                let n = shape.reduce(1, *)
                let bytes = sample(dtype, count: n, seed: i * 10 + j)
                let name = "\(dtype.rawValue).s\(j)"
                tensors.append((name, try Tensor(dtype: dtype, shape: shape, bytes: bytes)))
                expected[name] = bytes
            }
        }
        let path = dir + "/all.safetensors"
        try SafetensorsWriter.write(tensors, metadata: [("format", "pt")], to: path)
        let c = try read(path)
        XCTAssertEqual(c.tensors.count, tensors.count)
        let byName = Dictionary(uniqueKeysWithValues: c.tensors.map { ($0.path, $0.tensor) })
        for (name, original) in tensors {
            let t = try XCTUnwrap(byName[name], name)
            XCTAssertEqual(t.dtype, original.dtype, name)
            XCTAssertEqual(t.shape, original.shape, name)
            XCTAssertEqual(try t.contiguousBytes(), expected[name], name)
        }
        XCTAssertEqual(try files(), ["all.safetensors"])
    }

    func testViewsAndSharedStorageAreMaterialised() throws {
        // one storage of 6 float32: a (2,3) tensor, its transpose, and a slice at offset 2
        let values: [Float] = [0, 1, 2, 3, 4, 5]
        let storage = Storage(key: "0", dtype: .float32, bytes: values.withUnsafeBytes { Array($0) })
        let full = try Tensor(storage: storage, dtype: .float32, shape: [2, 3], strides: [3, 1], storageOffset: 0)
        let transposed = try Tensor(storage: storage, dtype: .float32, shape: [3, 2], strides: [1, 3], storageOffset: 0)
        let tail = try Tensor(storage: storage, dtype: .float32, shape: [3], strides: [1], storageOffset: 2)
        let expanded = try Tensor(storage: storage, dtype: .float32, shape: [2, 2], strides: [0, 1], storageOffset: 4)
        let path = dir + "/v.safetensors"
        try SafetensorsWriter.write([("full", full), ("t", transposed), ("tail", tail), ("x", expanded)], metadata: [], to: path)
        let c = try read(path)
        let byName = Dictionary(uniqueKeysWithValues: c.tensors.map { ($0.path, $0.tensor) })
        XCTAssertEqual(try byName["full"]?.floats(), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try byName["t"]?.floats(), [0, 3, 1, 4, 2, 5])
        XCTAssertEqual(byName["t"]?.shape, [3, 2])
        XCTAssertEqual(try byName["tail"]?.floats(), [2, 3, 4])
        XCTAssertEqual(try byName["x"]?.floats(), [4, 5, 4, 5])
        // each has a storage of its own in the file
        XCTAssertEqual(Set(c.tensors.map { ObjectIdentifier($0.tensor.storage) }).count, 4)
    }

    func testUnsupportedDTypeWritesNothing() throws {
        let path = dir + "/c.safetensors"
        for dtype in [DType.complex128, .complex32] {
            let ok = try Tensor(float32: [1], shape: [1])
            let bad = try Tensor(dtype: dtype, shape: [1], bytes: sample(dtype, count: 1, seed: 0))
            XCTAssertThrowsError(try SafetensorsWriter.write([("ok", ok), ("z", bad)], metadata: [], to: path)) { e in
                let fe = e as? FormatError
                XCTAssertEqual(fe?.kind, .unsupported)
                XCTAssertEqual(fe?.member, "z")
                XCTAssertTrue(fe?.message.contains(dtype.rawValue) ?? false)
                XCTAssertEqual(fe?.file, path)
            }
        }
        XCTAssertEqual(try files(), [])
    }

    func testDuplicateAndReservedNamesRefused() throws {
        let path = dir + "/d.safetensors"
        let t = try Tensor(float32: [1], shape: [1])
        XCTAssertThrowsError(try SafetensorsWriter.write([("w", t), ("v", t), ("w", t)], metadata: [], to: path)) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .refused)
            XCTAssertEqual((e as? FormatError)?.member, "w")
            XCTAssertTrue((e as? FormatError)?.message.contains("duplicate") ?? false)
        }
        XCTAssertThrowsError(try SafetensorsWriter.write([("__metadata__", t)], metadata: [], to: path)) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .refused)
        }
        XCTAssertThrowsError(try SafetensorsWriter.write([("w", t)], metadata: [("a", "1"), ("a", "2")], to: path)) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .refused)
            XCTAssertEqual((e as? FormatError)?.member, "header")
        }
        XCTAssertEqual(try files(), [])
    }

    func testRefusesToOverwriteAnInput() throws {
        let path = dir + "/in.safetensors"
        try SafetensorsWriter.write([("w", try Tensor(float32: [1, 2], shape: [2]))], metadata: [], to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let c = try read(path)
        XCTAssertThrowsError(try SafetensorsWriter.write(c.tensors.map { ($0.path, $0.tensor) }, metadata: [], to: path, forbidding: [path])) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .io)
            XCTAssertTrue((e as? FormatError)?.message.contains("same file") ?? false)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try files(), ["in.safetensors"])
    }

    func testFailedWriteLeavesDestinationUntouched() throws {
        let path = dir + "/keep.safetensors"
        try Data("original".utf8).write(to: URL(fileURLWithPath: path))
        // a storage whose loader fails halfway through the write
        let broken = Storage(key: "b", dtype: .float32, byteCount: 8) {
            throw FormatError(.truncated, file: "src.pth", member: "archive/data/0", offset: 0, "record ends early")
        }
        let bad = try Tensor(storage: broken, dtype: .float32, shape: [2], strides: [1], storageOffset: 0)
        let good = try Tensor(float32: [1, 2, 3, 4], shape: [4])
        XCTAssertThrowsError(try SafetensorsWriter.write([("a", good), ("b", bad)], metadata: [], to: path)) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .truncated)
            XCTAssertEqual((e as? FormatError)?.file, "src.pth")
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "original")
        XCTAssertEqual(try files(), ["keep.safetensors"])
    }
}

final class AtomicFileWriterTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws { dir = try tempDir() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private func files() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    func testCommitReplacesAtomically() throws {
        let path = dir + "/out.bin"
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        let w = try AtomicFileWriter(destination: path, bufferSize: 4096)
        XCTAssertTrue(w.temporaryPath.hasPrefix(dir + "/.out.bin.tmp-"), w.temporaryPath)
        try w.write([1, 2, 3])
        let big = [UInt8](repeating: 9, count: 10_000) // larger than the buffer
        try big.withUnsafeBytes { try w.write($0) }
        try w.write([4])
        XCTAssertEqual(w.position, 10_004)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old") // untouched until commit
        XCTAssertEqual(try files().count, 2)
        try w.commit()
        XCTAssertEqual(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))), [1, 2, 3] + big + [4])
        XCTAssertEqual(try files(), ["out.bin"])
        XCTAssertThrowsError(try w.write([1]))
        XCTAssertThrowsError(try w.commit())
    }

    func testAbortLeavesNothingBehind() throws {
        let path = dir + "/out.bin"
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        let w = try AtomicFileWriter(destination: path)
        try w.write([1, 2, 3])
        w.abort()
        w.abort()
        XCTAssertEqual(try files(), ["out.bin"])
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")
        XCTAssertThrowsError(try w.commit())
    }

    func testDeinitWithoutCommitRemovesTemporary() throws {
        let path = dir + "/new.bin"
        do {
            let w = try AtomicFileWriter(destination: path)
            try w.write([UInt8](repeating: 1, count: 100))
            XCTAssertEqual(try files().count, 1)
        }
        XCTAssertEqual(try files(), [])
    }

    func testRefusesAnInputAsOutput() throws {
        let input = dir + "/a.pth"
        try Data("input bytes".utf8).write(to: URL(fileURLWithPath: input))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.pth", withDestinationPath: input)
        try FileManager.default.linkItem(atPath: input, toPath: dir + "/hard.pth")
        for out in [input, dir + "/./a.pth", dir + "/link.pth", dir + "/hard.pth"] {
            XCTAssertThrowsError(try AtomicFileWriter(destination: out, forbidding: ["x.pth", input]), out) { e in
                XCTAssertEqual((e as? FormatError)?.kind, .io)
                XCTAssertEqual((e as? FormatError)?.file, out)
                XCTAssertTrue((e as? FormatError)?.message.contains("same file as input") ?? false)
            }
        }
        XCTAssertEqual(try String(contentsOfFile: input, encoding: .utf8), "input bytes")
        XCTAssertEqual(try files(), ["a.pth", "hard.pth", "link.pth"])
        // a different file is fine
        let w = try AtomicFileWriter(destination: dir + "/b.pth", forbidding: [input])
        w.abort()
    }

    func testErrorsNameTheDestination() throws {
        XCTAssertThrowsError(try AtomicFileWriter(destination: dir)) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .io)
            XCTAssertTrue((e as? FormatError)?.message.contains("directory") ?? false)
        }
        let missing = dir + "/no/such/dir/out.bin"
        XCTAssertThrowsError(try AtomicFileWriter(destination: missing)) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .io)
            XCTAssertEqual((e as? FormatError)?.file, missing)
        }
    }
}

/// Files written by torch/safetensors (`fixtures/generate.py`) and the hostile set
/// (`fixtures/hostile/make_hostile.py`); skipped when the fixtures are absent.
final class SafetensorsFixtureTests: XCTestCase {
    /// The repository root: three levels up from this file.
    private static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func fixture(_ relative: String) throws -> String {
        let path = Self.root.appendingPathComponent("fixtures").appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("fixture \(relative) not generated") }
        return path
    }

    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// Every tensor equals the golden file's: name, order (data-offset order), dtype, shape, bytes.
    private func checkGolden(_ name: String) throws -> Checkpoint {
        let path = try fixture("valid/" + name)
        let goldenData = try Data(contentsOf: URL(fileURLWithPath: try fixture("golden/\(name).json")))
        let golden = try goldenData.withUnsafeBytes { try JSONValue.parse($0) }
        XCTAssertEqual(golden["format"]?.stringValue, "safetensors")
        let expected = try XCTUnwrap(golden["tensors"]?.arrayValue)
        let c = try Safetensors.read(try ByteRegion.map(path: path), file: path)
        XCTAssertEqual(c.info.format, .safetensors)
        let got = c.tensors
        XCTAssertEqual(got.map(\.path), expected.compactMap { $0["name"]?.stringValue }, name)
        for (g, e) in zip(got, expected) {
            XCTAssertEqual(g.tensor.dtype.rawValue, e["dtype"]?.stringValue, g.path)
            XCTAssertEqual(g.tensor.shape, e["shape"]?.arrayValue?.compactMap { $0.numberValue?.intValue }, g.path)
            XCTAssertEqual(hex(try g.tensor.contiguousBytes()), e["values_hex"]?.stringValue, g.path)
        }
        return c
    }

    func testGoldenTensorsFile() throws {
        let c = try checkGolden("tensors.safetensors")
        XCTAssertEqual(c.info.metadata.map(\.key), ["format"])
        XCTAssertEqual(c.info.metadata.map(\.value), ["pt"])
    }

    func testGoldenUnpaddedFile() throws {
        let c = try checkGolden("unpadded.safetensors")
        XCTAssertEqual(c.info.metadata.first(where: { $0.key == "note" })?.value, "ünï")
        XCTAssertEqual(c.info.metadata.first(where: { $0.key == "producer" })?.value, "ckpt fixtures")
    }

    /// Rewriting the official writer's file with the same tensors and metadata gives the same bytes:
    /// same header text, padding, order and data.
    func testWriterReproducesOfficialFileByteForByte() throws {
        let path = try fixture("valid/tensors.safetensors")
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let c = try Safetensors.read(ByteRegion(original), file: path)
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/rewritten.safetensors"
        // input order deliberately scrambled: the writer must impose the official order itself
        let tensors = c.tensors.reversed().map { (name: $0.path, tensor: $0.tensor) }
        try SafetensorsWriter.write(tensors, metadata: c.info.metadata.map { ($0.key, $0.value) }, to: out, forbidding: [path])
        let rewritten = try [UInt8](Data(contentsOf: URL(fileURLWithPath: out)))
        XCTAssertEqual(rewritten.count, original.count)
        XCTAssertTrue(rewritten == original, "rewritten file differs from the official writer's")
    }

    /// Every `st_*` file of the hostile set gives the expected verdict and error kind.
    func testHostileSet() throws {
        let expectPath = try fixture("hostile/expect.json")
        let expect = try Data(contentsOf: URL(fileURLWithPath: expectPath)).withUnsafeBytes { try JSONValue.parse($0) }
        let cases = try XCTUnwrap(expect.arrayValue).filter { $0["file"]?.stringValue?.hasPrefix("files/st_") ?? false }
        XCTAssertGreaterThan(cases.count, 30)
        for c in cases {
            guard let rel = c["file"]?.stringValue, let verdict = c["expect"]?.stringValue else {
                XCTFail("bad expect entry \(c.serialized())")
                continue
            }
            let path = try fixture("hostile/" + rel)
            let name = (path as NSString).lastPathComponent
            do {
                let ckpt = try Safetensors.read(try ByteRegion.map(path: path), file: name)
                XCTAssertEqual(verdict, "load", "\(rel) loaded, expected \(verdict) \(c["kind"]?.stringValue ?? "")")
                if let n = c["tensors"]?.numberValue?.intValue { XCTAssertEqual(ckpt.tensors.count, n, rel) }
                for (_, t) in ckpt.tensors { XCTAssertNoThrow(try t.contiguousBytes(), rel) }
            } catch let e as FormatError {
                XCTAssertEqual(verdict, "refuse", "\(rel): \(e)")
                XCTAssertEqual(e.kind.rawValue, c["kind"]?.stringValue, "\(rel): \(e)")
                XCTAssertEqual(e.file, name)
                XCTAssertNotNil(e.member, rel)
                XCTAssertNotNil(e.offset, rel)
                XCTAssertFalse(e.description.contains("\n"), rel)
                for m in c["mentions"]?.arrayValue ?? [] {
                    if let s = m.stringValue { XCTAssertTrue(e.description.contains(s), "\(rel): \(e) lacks \(s)") }
                }
            }
        }
    }
}
