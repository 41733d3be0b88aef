import Foundation
@testable import CkptFormat
import CkptTensor
import XCTest

/// The restricted unpickler on hand-built pickles: CPython's semantics where they matter.
final class UnpicklerTests: XCTestCase {
    private func run(_ bytes: [UInt8], salvage: Bool = false) throws -> Value {
        try bytes.withUnsafeBytes { raw in
            try Unpickler(bytes: raw, file: "t", member: "m", options: UnpickleOptions(salvage: salvage), persistentLoad: nil).run()
        }
    }

    private func unicode(_ s: String) -> [UInt8] {
        let b = Array(s.utf8)
        return [0x58] + withUnsafeBytes(of: UInt32(b.count).littleEndian, Array.init) + b
    }

    func testMemoIsAReferenceNotACopy() throws {
        // l = []; memo[0] = l; d = {'a': l}; l.append(1)  → d['a'] == [1]
        // d = {}; 'a'; l = [] memo 0; SETITEM → d; BINGET 0 (l); 1; APPEND; POP → d; STOP
        let q: [UInt8] = [0x80, 0x02, 0x7D] + unicode("a") + [0x5D, 0x71, 0x00, 0x73, 0x68, 0x00, 0x4B, 0x01, 0x61, 0x30, 0x2E]
        let v = try run(q)
        XCTAssertEqual(v.dictValue?["a"]?.sequenceValue?.first?.intValue, 1)
    }

    func testDictKeysCompareAsPythonsAcrossManyKeys() throws {
        // {'k0': .., 'k999': .., then every 'ki' again, 1, 1.0, True}: past several growths of the
        // key table; a repeated key keeps its first position and takes the last value, and 1,
        // 1.0 and True are one key (the first one's)
        var p: [UInt8] = [0x80, 0x02, 0x7D, 0x28]
        for i in 0 ..< 2000 {
            p += unicode("k\(i % 1000)") + [0x4D, UInt8(i & 0xFF), UInt8(i >> 8)]
        }
        p += [0x4B, 0x01] + unicode("a")
        p += [0x47, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0] + unicode("b")
        p += [0x88] + unicode("c")
        p += [0x75, 0x2E]
        let d = try XCTUnwrap(try run(p).dictValue)
        XCTAssertEqual(d.items.count, 1001)
        XCTAssertEqual(d.items[0].key.stringValue, "k0")
        XCTAssertEqual(d.items[0].value.intValue, 1000)
        XCTAssertEqual(d.items[999].key.stringValue, "k999")
        XCTAssertEqual(d.items[999].value.intValue, 1999)
        XCTAssertEqual(d.items[1000].key.intValue, 1)
        XCTAssertEqual(d.items[1000].value.stringValue, "c")
    }

    func testMemoIndicesFarApartAndMemoizeUseLenOfMemo() throws {
        // 7 → memo[0]; 8 → memo[1000000] (LONG_BINPUT); 9 → MEMOIZE, which puts at len(memo) = 2;
        // then memo[2], memo[1000000], memo[0] as a tuple
        let far: [UInt8] = [0x40, 0x42, 0x0F, 0x00]  // 1,000,000 little-endian
        let p: [UInt8] = [0x80, 0x04, 0x4B, 7, 0x71, 0, 0x4B, 8, 0x72] + far + [0x4B, 9, 0x94, 0x30, 0x30, 0x30,
                          0x68, 2, 0x6A] + far + [0x68, 0, 0x87, 0x2E]
        XCTAssertEqual(try run(p).sequenceValue?.compactMap(\.intValue), [9, 8, 7])
        // an index never put is still an error, in the array's range or past it
        XCTAssertThrowsError(try run([0x80, 0x04, 0x4B, 7, 0x71, 5, 0x68, 3, 0x2E])) { XCTAssertEqual(($0 as? FormatError)?.kind, .corrupt) }
        XCTAssertThrowsError(try run([0x80, 0x04, 0x4B, 7, 0x71, 0, 0x6A] + far + [0x2E])) { XCTAssertEqual(($0 as? FormatError)?.kind, .corrupt) }
    }

    func testLong1IsSignedAndWideIntegersKeepTheirValue() throws {
        XCTAssertEqual(try run([0x80, 0x02, 0x8A, 0x01, 0xFF, 0x2E]).intValue, -1)
        XCTAssertEqual(try run([0x80, 0x02, 0x8A, 0x02, 0x00, 0x80, 0x2E]).intValue, -32768)
        // the legacy magic number 0x1950A86A20F9469CFC6C
        let magic = try run([0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E])
        guard case let .bigInt(s) = magic else { return XCTFail("expected a big integer, got \(magic)") }
        XCTAssertEqual(s, "119547037146038801333356")
    }

    func testBinFloatIsBigEndian() throws {
        XCTAssertEqual(try run([0x80, 0x02, 0x47, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0, 0x2E]).pathComponent, "1.5")
    }

    func testDisallowedGlobalIsRefusedByNameAndOffset() {
        let p: [UInt8] = [0x80, 0x02, 0x63] + Array("os\nsystem\n".utf8) + [0x2E]
        XCTAssertThrowsError(try run(p)) { e in
            let f = e as? FormatError
            XCTAssertEqual(f?.kind, .refused)
            XCTAssertEqual(f?.offset, 2)
            XCTAssertTrue(f?.description.contains("'os.system'") ?? false)
        }
    }

    func testSalvageKeepsTheCallInert() throws {
        // os.system('x') under salvage: an opaque call node, never run
        let p: [UInt8] = [0x80, 0x02, 0x63] + Array("os\nsystem\n".utf8) + unicode("x") + [0x85, 0x52, 0x2E]
        guard case let .object(o) = try run(p, salvage: true) else { return XCTFail("expected an opaque object") }
        XCTAssertEqual(o.global, QualifiedName("os", "system"))
        XCTAssertEqual(o.construction, .call)
        XCTAssertEqual(o.arguments.first?.stringValue, "x")
    }

    func testMemoGetBeforePutAndUnderflowAreCorrupt() {
        XCTAssertThrowsError(try run([0x80, 0x02, 0x68, 0x05, 0x2E])) { XCTAssertEqual(($0 as? FormatError)?.kind, .corrupt) }
        XCTAssertThrowsError(try run([0x80, 0x02, 0x2E])) { XCTAssertEqual(($0 as? FormatError)?.kind, .corrupt) }
        XCTAssertThrowsError(try run([0x80, 0x02, 0x4E])) { XCTAssertEqual(($0 as? FormatError)?.kind, .truncated) }
    }

    func testCycleIsAReferenceNotRecursedForever() throws {
        // l = []; l.append(l): what torch.load(weights_only=True) builds, shown as a reference
        let p: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2E]
        guard case let .list(items) = try run(p), items.count == 1, case let .reference(to) = items[0] else {
            return XCTFail("expected [<reference to the root>]")
        }
        XCTAssertEqual(to, "")
    }

    func testAllocationBudgetIsATotalNotPerCall() throws {
        // [bytearray(1 MiB)] * 100 as 100 separate calls: each under the per-call cap, 100 MiB together
        var p: [UInt8] = [0x80, 0x02, 0x63] + Array("builtins\nbytearray\n".utf8) + [0x71, 0x00, 0x30, 0x28]
        for _ in 0 ..< 100 { p += [0x68, 0x00, 0x4A, 0x00, 0x00, 0x10, 0x00, 0x85, 0x52] }
        p += [0x6C, 0x2E]
        XCTAssertThrowsError(try run(p)) { XCTAssertEqual(($0 as? FormatError)?.kind, .limit, "\($0)") }
        // a few are fine
        var q: [UInt8] = [0x80, 0x02, 0x63] + Array("builtins\nbytearray\n".utf8) + [0x71, 0x00, 0x30, 0x28]
        for _ in 0 ..< 3 { q += [0x68, 0x00, 0x4A, 0x00, 0x00, 0x10, 0x00, 0x85, 0x52] }
        q += [0x6C, 0x2E]
        guard case let .list(items) = try run(q) else { return XCTFail("expected a list") }
        XCTAssertEqual(items.count, 3)
    }

    func testReferenceCyclesAreWrittenAsMemoReferences() throws {
        // d = {'a': [1]}; d['a'].append(d['a']); d['self'] = d
        let root = Value.dict(PyDict(items: [
            (.string("a"), .list([.int(1), .reference("a")])), (.string("self"), .reference("")),
        ]))
        var p = Pickler(file: "t")
        p.prepare(root)
        try p.value(root, path: "")
        p.finish()
        let back = try p.out.withUnsafeBytes { try Unpickler(bytes: $0, file: "t", member: "m", options: UnpickleOptions(), persistentLoad: nil).run() }
        let d = try XCTUnwrap(back.dictValue)
        guard case let .list(a)? = d["a"], a.count == 2, case let .reference(inner) = a[1], case let .reference(outer)? = d["self"] else {
            return XCTFail("cycles not rebuilt: \(back)")
        }
        XCTAssertEqual(inner, "a")
        XCTAssertEqual(outer, "")
    }

    func testPicklerOutputReadsBack() throws {
        let t = try Tensor(float32: [1, -2, 3.5, 0], shape: [2, 2])
        let root = Value.dict(PyDict(items: [
            (.string("w"), .tensor(t)), (.string("n"), .int(1 << 40)), (.string("neg"), .int(-5)),
            (.string("f"), .float(0.1)), (.string("s"), .set([.int(1)])), (.string("b"), .bytes([0, 255])),
            (.string("big"), .bigInt("-123456789012345678901234567890")),
        ], kind: .orderedDict, attributes: [("_metadata", .dict(PyDict(items: [(.string(""), .dict(PyDict(items: [(.string("version"), .int(1))])))], kind: .orderedDict)))]))
        var p = Pickler(file: "t")
        try p.value(root, path: "")
        p.finish()
        let storages = p.storages
        let back = try p.out.withUnsafeBytes { raw in
            try Unpickler(bytes: raw, file: "t", member: "m", options: UnpickleOptions(), persistentLoad: { pid in
                guard case let .tuple(f) = pid, let k = f[2].stringValue, let i = Int(k) else { throw FormatError(.corrupt, file: "t", "pid") }
                return .storage(storages[i])
            }).run()
        }
        let d = try XCTUnwrap(back.dictValue)
        XCTAssertEqual(d.kind, .orderedDict)
        XCTAssertEqual(try d["w"]?.tensorValue?.floats(), [1, -2, 3.5, 0])
        XCTAssertEqual(d["n"]?.intValue, 1 << 40)
        XCTAssertEqual(d["neg"]?.intValue, -5)
        XCTAssertEqual(d["f"]?.pathComponent, "0.1")
        if case let .bytes(b)? = d["b"] { XCTAssertEqual(b, [0, 255]) } else { XCTFail("bytes") }
        if case let .bigInt(s)? = d["big"] { XCTAssertEqual(s, "-123456789012345678901234567890") } else { XCTFail("bigInt") }
        XCTAssertEqual(d.attribute("_metadata")?.dictValue?[""]?.dictValue?["version"]?.intValue, 1)
    }

    func testLibzipAgreesWithOurCentralDirectoryOnEveryZipFixture() throws {
        let dir = GoldenFixtureTests.fixtures.appendingPathComponent("valid")
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".pth") || name.hasSuffix(".pt") {
            let region = try ByteRegion.map(path: dir.appendingPathComponent(name).path)
            guard CheckpointReader.detect(region.bytes) == .zip else { continue }
            XCTAssertTrue(try ZipArchive(region: region, file: name).libzipAgrees(), name)
        }
    }
}

/// The zip64 path of the writer, forced on small files by lowering its threshold.
final class Zip64WriterTests: XCTestCase {
    func testZip64RecordsAndEndRecordsReadBack() throws {
        let path = GoldenFixtureTests.fixtures.appendingPathComponent("valid/views.pth").path
        let ckpt = try CheckpointReader.read(path: path)
        // CKPT_ZIP64_OUT keeps the file so torch can be shown it (fixtures/check_ckpt_output.sh does)
        let kept = ProcessInfo.processInfo.environment["CKPT_ZIP64_OUT"]
        let out = kept ?? FileManager.default.temporaryDirectory.appendingPathComponent("zip64-\(UUID().uuidString).pth").path
        defer { if kept == nil { try? FileManager.default.removeItem(atPath: out) } }
        try CheckpointWriter.writeTorchZip(ckpt, to: out, forbidding: [], progress: nil, zip64Threshold: 0)
        let region = try ByteRegion.map(path: out)
        let archive = try ZipArchive(region: region, file: out)
        XCTAssertTrue(archive.libzipAgrees())
        // every record carries a zip64 local extra before its 64-byte alignment padding
        for e in archive.entries { XCTAssertEqual(e.dataOffset % 64, 0, e.name) }
        let back = try CheckpointReader.read(path: out)
        XCTAssertEqual(back.tensors.map(\.path), ckpt.tensors.map(\.path))
        for ((_, a), (_, b)) in zip(ckpt.tensors, back.tensors) { XCTAssertEqual(try a.contiguousBytes(), try b.contiguousBytes()) }
    }
}

/// `convert --dtype` to .pth: each cast storage streams into its record chunk by chunk.
final class StreamedCastWriterTests: XCTestCase {
    func testCastStoragesStreamIntoTheZipBitIdenticalToWholeCasts() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cast-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // a source over a mapped file (the storages read with pread), big enough for several chunks
        let n = 3 << 20
        var values = [Float](repeating: 0, count: n)
        for i in 0 ..< n { values[i] = Float(bitPattern: UInt32(truncatingIfNeeded: i &* 2_654_435_761)) }
        let a = try Tensor(float32: values, shape: [n])
        let b = try Tensor(float32: Array(values.prefix(1000)), shape: [10, 100])
        let source = dir.appendingPathComponent("in.pth").path
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: [(.string("a"), .tensor(a)), (.string("b"), .tensor(b))], kind: .orderedDict)),
                                              info: FormatInfo(format: .zip)), to: source)
        let input = try CheckpointReader.read(path: source)
        for target in [DType.float16, .bfloat16] {
            var casts: [Storage] = []
            let streamed = try input.mapTensors { _, t in
                let s = try t.storage.cast(to: target)
                casts.append(s)
                return try Tensor(storage: s, dtype: target, shape: t.shape, strides: t.strides, storageOffset: t.storageOffset)
            }
            // one file name (torch's archive folder is named after it) in two folders
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("streamed-\(target.rawValue)"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("whole-\(target.rawValue)"), withIntermediateDirectories: true)
            let out = dir.appendingPathComponent("streamed-\(target.rawValue)/out.pth").path
            try CheckpointWriter.write(streamed, to: out)
            XCTAssertEqual(casts.count, 2)
            for s in casts { XCTAssertFalse(s.isLoaded, "the cast of storage \(s.key) was held whole") }
            // the same checkpoint with every cast computed whole first writes the same bytes
            let whole = try input.mapTensors { _, t in
                let s = try t.storage.cast(to: target)
                _ = try s.slice()
                return try Tensor(storage: s, dtype: target, shape: t.shape, strides: t.strides, storageOffset: t.storageOffset)
            }
            let reference = dir.appendingPathComponent("whole-\(target.rawValue)/out.pth").path
            try CheckpointWriter.write(whole, to: reference)
            let written = try Data(contentsOf: URL(fileURLWithPath: out)), expectedFile = try Data(contentsOf: URL(fileURLWithPath: reference))
            XCTAssertTrue(written == expectedFile, "streamed and whole casts wrote different files (\(written.count) and \(expectedFile.count) bytes)")
            // and the values are torch's rounding of every element
            let back = try CheckpointReader.read(path: out)
            let got = try XCTUnwrap(back.tensors.first { $0.path == "a" }?.tensor).contiguousBytes()
            let expected: [UInt16] = values.map { target == .float16 ? HalfFloat.halfBits(from: $0) : HalfFloat.bfloat16Bits(from: $0) }
            XCTAssertTrue(got == expected.withUnsafeBytes { Array($0) }, "values are not torch's rounding")
        }
    }
}
