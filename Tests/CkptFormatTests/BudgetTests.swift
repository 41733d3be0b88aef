import Foundation
@testable import CkptFormat
import CkptTensor
import XCTest

/// For each budget of the readers, a file just under it is read and a file just over it is
/// refused with a `.limit` error naming what ran out. Budgets are scaled down where a file at
/// the real value would be too large for a unit test (the options take any value), and tested
/// at the real value where that is cheap.
final class BudgetTests: XCTestCase {
    private func run(_ bytes: [UInt8], _ options: UnpickleOptions) throws -> Value {
        try bytes.withUnsafeBytes { raw in
            try Unpickler(bytes: raw, file: "t", member: "m", options: options, persistentLoad: nil).run()
        }
    }

    private func assertLimit(_ bytes: [UInt8], _ options: UnpickleOptions, _ says: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try run(bytes, options), file: file, line: line) { e in
            let f = e as? FormatError
            XCTAssertEqual(f?.kind, .limit, "\(e)", file: file, line: line)
            XCTAssertTrue("\(e)".contains(says), "\(e)", file: file, line: line)
        }
    }

    private func int(_ v: Int) -> [UInt8] { [0x4A] + withUnsafeBytes(of: Int32(v).littleEndian, Array.init) }  // BININT
    private func put(_ i: UInt32) -> [UInt8] { [0x72] + withUnsafeBytes(of: i.littleEndian, Array.init) }    // LONG_BINPUT
    private func get(_ i: UInt32) -> [UInt8] { [0x6A] + withUnsafeBytes(of: i.littleEndian, Array.init) }    // LONG_BINGET

    /// `[0, 1, …, k-1]`: one list and k ints.
    private func list(of k: Int) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x02, 0x5D, 0x28]
        for i in 0 ..< k { p += int(i) }
        return p + [0x65, 0x2E]
    }

    /// `d` lists, each inside the one before: `[[[…]]]`.
    private func nested(_ d: Int) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x02]
        for _ in 0 ..< d { p += [0x5D] }
        for _ in 0 ..< d - 1 { p += [0x61] }  // APPEND the inner list to the one below it
        return p + [0x2E]
    }

    /// A list of `m` references to one list of `k` ints, then `r` more ints: it expands to
    /// 1 + m·(k+1) + r values from a few bytes per reference (billion laughs, scaled).
    private func laughs(m: Int, k: Int, r: Int) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x02, 0x5D, 0x28, 0x5D] + put(0) + [0x28]
        for i in 0 ..< k { p += int(i) }
        p += [0x65]  // APPENDS: the shared list is full, and the outer list holds it once
        for _ in 1 ..< m { p += get(0) }
        for i in 0 ..< r { p += int(i) }
        return p + [0x65, 0x2E]
    }

    /// `[bytearray(n) for n in sizes]`, each a separate call.
    private func bytearrays(_ sizes: [Int]) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x02, 0x63] + Array("builtins\nbytearray\n".utf8) + put(0) + [0x30, 0x28]
        for n in sizes { p += get(0) + int(n) + [0x85, 0x52] }
        return p + [0x6C, 0x2E]
    }

    func testObjectBudget() throws {
        // one list and 1,000 ints: 1,001 objects
        var o = UnpickleOptions()
        o.maxObjects = 1001
        XCTAssertEqual(try run(list(of: 1000), o).sequenceValue?.count, 1000)
        o.maxObjects = 1000
        assertLimit(list(of: 1000), o, "more than 1000 objects in one pickle")
    }

    func testDepthBudgetAtItsRealValue() throws {
        // the outermost list is at depth 0: maxDepth + 1 nested lists are the deepest read
        let o = UnpickleOptions()
        XCTAssertEqual(o.maxDepth, 200)
        var v = try run(nested(201), o)
        var depth = 1
        while let inner = v.sequenceValue?.first { v = inner; depth += 1 }
        XCTAssertEqual(depth, 201)
        assertLimit(nested(202), o, "objects nested deeper than 200 levels")
    }

    func testExpansionBudgetAtItsRealValue() throws {
        // 1 + 2,999 × (999 + 1) + 999 = 3,000,000 values from a ~20 KB pickle
        let o = UnpickleOptions()
        XCTAssertEqual(o.maxExpandedValues, 3_000_000)
        let v = try run(laughs(m: 2999, k: 999, r: 999), o)
        XCTAssertEqual(v.sequenceValue?.count, 2999 + 999)
        assertLimit(laughs(m: 2999, k: 999, r: 1000), o, "object tree expands to more than 3000000 values")
        // scaled: the same boundary at 1 + 3 × 11 + 2 = 36 (the per-byte budget off)
        var small = UnpickleOptions()
        small.maxExpandedValues = 36
        small.expandedValuesPerPickleByte = 0
        XCTAssertEqual(try run(laughs(m: 3, k: 10, r: 2), small).sequenceValue?.count, 5)
        assertLimit(laughs(m: 3, k: 10, r: 3), small, "more than 36 values")
    }

    /// `laughs(m:k:r:)` padded with no-ops (NONE POP, 2 bytes; LONG_BINPUT of the last int,
    /// 5 bytes) to exactly `length` bytes.
    private func laughs(m: Int, k: Int, r: Int, length: Int) -> [UInt8] {
        let p = laughs(m: m, k: k, r: r)
        var pad = length - p.count
        precondition(pad >= 4 || pad == 0 || pad == 2)
        var filler: [UInt8] = []
        if pad % 2 == 1 { filler += put(0xFFFF); pad -= 5 }
        for _ in 0 ..< pad / 2 { filler += [0x4E, 0x30] }
        // before the final APPENDS + STOP, where the stack holds the last int
        return Array(p.dropLast(2)) + filler + [0x65, 0x2E]
    }

    func testExpansionBudgetGrowsWithThePickleBytes() throws {
        // 1 + 300 × 101 + 5 = 30,306 values; at one value per byte read (the default rate), a
        // pickle of 30,306 bytes may expand to them and one of 30,305 bytes may not
        let values = 1 + 300 * 101 + 5
        var o = UnpickleOptions()
        XCTAssertEqual(o.expandedValuesPerPickleByte, 1)
        o.maxExpandedValues = 1000
        XCTAssertEqual(try run(laughs(m: 300, k: 100, r: 5, length: values), o).sequenceValue?.count, 305)
        assertLimit(laughs(m: 300, k: 100, r: 5, length: values - 1), o, "object tree expands to more than 30305 values")
        // the floor still holds for a small pickle: 3,000 bytes expanding to 30,306 values
        XCTAssertLessThan(laughs(m: 300, k: 100, r: 5).count, 3000)
        assertLimit(laughs(m: 300, k: 100, r: 5, length: 3000), o, "more than 3000 values")
    }

    /// A state dict of 300,000 tensors (~110 bytes of pickle and a dozen values each, past the
    /// fixed 3,000,000) reads, as torch reads it.
    func testThreeHundredThousandTensorsRead() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("budget-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let n = 300_000
        let storage = Storage(key: "0", dtype: .float32, bytes: withUnsafeBytes(of: Float(2.5)) { Array($0) })
        var items: [(key: Value, value: Value)] = []
        items.reserveCapacity(n)
        for i in 0 ..< n {
            // views of one shared storage keep the file small; each is its own tensor
            items.append((.string("layer\(i / 10).block.\(i % 10).weight"), .tensor(try Tensor(storage: storage, dtype: .float32, shape: [1], strides: [1], storageOffset: 0))))
        }
        let path = dir.appendingPathComponent("many.pth").path
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: items, kind: .orderedDict)), info: FormatInfo(format: .zip)), to: path)
        // past the fixed budget: refused when the budget does not grow with the pickle
        var fixed = UnpickleOptions()
        fixed.expandedValuesPerPickleByte = 0
        XCTAssertThrowsError(try CheckpointReader.read(path: path, options: fixed)) { e in
            XCTAssertTrue("\(e)".contains("object tree expands to more than 3000000 values"), "\(e)")
        }
        let c = try CheckpointReader.read(path: path)
        let tensors = c.tensors
        XCTAssertEqual(tensors.count, n)
        XCTAssertEqual(tensors.last?.path, "layer29999.block.9.weight")
        XCTAssertEqual(try tensors.last?.tensor.doubles(), [2.5])
    }

    func testAllocationBudgetsPerCallAndInTotalAtTheirRealValues() throws {
        let o = UnpickleOptions()
        XCTAssertEqual(o.maxAllocationPerCall, 1 << 20)
        XCTAssertEqual(o.maxAllocatedBytes, 64 << 20)
        // one call: 1 MiB is read, one byte more is refused
        guard case let .bytes(b)? = try run(bytearrays([1 << 20]), o).sequenceValue?.first else { return XCTFail("expected bytes") }
        XCTAssertEqual(b.count, 1 << 20)
        assertLimit(bytearrays([(1 << 20) + 1]), o, "past the 1048576 one call may ask for")
        // together: 64 calls of 1 MiB are exactly the total; one byte more is refused
        let full = [Int](repeating: 1 << 20, count: 64)
        XCTAssertEqual(try run(bytearrays(full), o).sequenceValue?.count, 64)
        assertLimit(bytearrays(full + [1]), o, "past the 67108864-byte total")
        // scaled
        var small = UnpickleOptions()
        small.maxAllocationPerCall = 10
        small.maxAllocatedBytes = 25
        XCTAssertEqual(try run(bytearrays([10, 10, 5]), small).sequenceValue?.count, 3)
        assertLimit(bytearrays([10, 10, 6]), small, "past the 25-byte total")
        assertLimit(bytearrays([11]), small, "past the 10 one call may ask for")
    }

    func testInflatedRecordBudget() throws {
        XCTAssertEqual(UnpickleOptions().maxInflatedRecordSize, 1 << 30)
        // every record deflated; the largest one read is data.pkl, 306 bytes once inflated
        let path = GoldenFixtureTests.fixtures.appendingPathComponent("hostile/files/either_deflated_records.pth").path
        var o = UnpickleOptions()
        o.maxInflatedRecordSize = 306
        let c = try CheckpointReader.read(path: path, options: o)
        XCTAssertEqual(c.tensors.count, 2)
        for (_, t) in c.tensors { XCTAssertFalse(try t.doubles().isEmpty) }
        o.maxInflatedRecordSize = 305
        XCTAssertThrowsError(try CheckpointReader.read(path: path, options: o)) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .limit, "\(e)")
            XCTAssertEqual("\(e)", "\(path): archive/data.pkl: deflated record declares 306 bytes (limit 305)")
        }
    }

    func testSafetensorsHeaderLengthAtItsRealValue() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("budget-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func file(headerLength n: Int) throws -> String {
            var b = withUnsafeBytes(of: UInt64(n).littleEndian, Array.init) + Array("{}".utf8)
            b += [UInt8](repeating: 0x20, count: n - 2)  // padded with spaces, as writers pad
            let path = dir.appendingPathComponent("h\(n).safetensors").path
            try Data(b).write(to: URL(fileURLWithPath: path))
            return path
        }
        XCTAssertEqual(Safetensors.maxHeaderLength, 100_000_000)
        let under = try file(headerLength: 100_000_000)
        XCTAssertEqual(try CheckpointReader.read(path: under).tensors.count, 0)
        try FileManager.default.removeItem(atPath: under)
        let over = try file(headerLength: 100_000_001)
        XCTAssertThrowsError(try Safetensors.read(try ByteRegion.map(path: over), file: over)) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .limit, "\(e)")
            XCTAssertTrue("\(e)".contains("header length 100000001 exceeds the limit of 100000000 bytes"), "\(e)")
        }
    }

    func testSafetensorsHeaderDepth() throws {
        // metadata nested d deep: at 128 the JSON parses (and is then refused for not being a
        // string, which is another rule); at 129 the depth budget refuses it first
        func header(depth d: Int) -> [UInt8] {
            // {"__metadata__": {"a": [[…]]}}: the object, the metadata object, then d - 2 arrays
            let json = "{\"__metadata__\":{\"a\":" + String(repeating: "[", count: d - 2) + String(repeating: "]", count: d - 2) + "}}"
            var h = Array(json.utf8)
            h += [UInt8](repeating: 0x20, count: (8 - h.count % 8) % 8)
            return withUnsafeBytes(of: UInt64(h.count).littleEndian, Array.init) + h
        }
        func read(_ b: [UInt8]) throws -> Checkpoint {
            try Safetensors.read(ByteRegion(b), file: "t.safetensors")
        }
        XCTAssertEqual(Safetensors.maxHeaderDepth, 128)
        XCTAssertThrowsError(try read(header(depth: 128))) { e in
            XCTAssertNotEqual((e as? FormatError)?.kind, .limit, "\(e)")
        }
        XCTAssertThrowsError(try read(header(depth: 129))) { e in
            XCTAssertEqual((e as? FormatError)?.kind, .limit, "\(e)")
            XCTAssertTrue("\(e)".contains("json nesting deeper than 128 levels"), "\(e)")
        }
    }

    func testExpandedViewBudgetAtItsRealValue() throws {
        // a stride-0 view may materialise 1 GiB, or 64× its storage when that is more
        let one = Storage(key: "0", dtype: .float32, bytes: [0, 0, 0x80, 0x3F])
        XCTAssertEqual(Tensor.maxExpandedBytes, 1 << 30)
        XCTAssertNoThrow(try Tensor(storage: one, dtype: .float32, shape: [1 << 28], strides: [0], storageOffset: 0).checkMaterializable())
        XCTAssertThrowsError(try Tensor(storage: one, dtype: .float32, shape: [(1 << 28) + 1], strides: [0], storageOffset: 0).checkMaterializable()) { e in
            guard case TensorError.tooLarge = e else { return XCTFail("\(e)") }
        }
        // 64× a 32 MiB storage (never loaded: the check reads no data)
        let big = Storage(key: "1", dtype: .float32, byteCount: 32 << 20) { throw TensorError.io(path: "t", message: "not read") }
        XCTAssertNoThrow(try Tensor(storage: big, dtype: .float32, shape: [64, 8 << 20], strides: [0, 1], storageOffset: 0).checkMaterializable())
        XCTAssertThrowsError(try Tensor(storage: big, dtype: .float32, shape: [65, 8 << 20], strides: [0, 1], storageOffset: 0).checkMaterializable())
        XCTAssertFalse(big.isLoaded)
    }
}
