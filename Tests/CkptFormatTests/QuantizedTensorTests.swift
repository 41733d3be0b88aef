import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Quantized checkpoints (fixtures/quantized, written by its generator with real torch): ckpt
/// reads every tensor torch's `weights_only` loader gives — stored integers, strides, scheme,
/// scale and zero point(s), dequantized values — or refuses the file where torch fails; written
/// back as `.pth`, the file reads the same again.
final class QuantizedTensorTests: XCTestCase {
    static let folder = GoldenFixtureTests.fixtures.appendingPathComponent("quantized")

    struct Case {
        let name: String
        let entry: JSONValue
        var path: String { QuantizedTensorTests.folder.appendingPathComponent("files").appendingPathComponent(name).path }
    }

    static func cases() throws -> [Case] {
        let data = try Data(contentsOf: folder.appendingPathComponent("expected.json"))
        let expected = try data.withUnsafeBytes { try JSONValue.parse($0) }
        guard case let .object(files)? = expected["files"] else { throw XCTSkip("no files in expected.json") }
        return files.map { Case(name: $0.key, entry: $0.value) }.sorted { $0.name < $1.name }
    }

    /// Checks `read`'s tensors against torch's list, in order.
    func assertMatches(_ read: Checkpoint, _ c: Case, file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = (c.entry["entries"]?.arrayValue ?? []).filter { $0["dtype"] != nil }
        XCTAssertEqual(read.tensors.map(\.path), expected.compactMap { $0["name"]?.stringValue }, "\(c.name): names", file: file, line: line)
        for ((p, t), e) in zip(read.tensors, expected) {
            let what = "\(c.name): \(p)"
            XCTAssertEqual(t.dtype.rawValue, e["dtype"]?.stringValue, what, file: file, line: line)
            XCTAssertEqual(t.shape, GoldenFixtureTests.ints(e["shape"]), what, file: file, line: line)
            XCTAssertEqual(t.strides, GoldenFixtureTests.ints(e["stride"]), what, file: file, line: line)
            XCTAssertEqual(t.storageOffset, e["storage_offset"]?.numberValue?.intValue, what, file: file, line: line)
            XCTAssertEqual(t.requiresGrad, e["requires_grad"] == .bool(true), "\(what): requires_grad", file: file, line: line)
            guard let scheme = e["qscheme"]?.stringValue else {
                XCTAssertNil(t.quantization, what, file: file, line: line)
                XCTAssertEqual(GoldenFixtureTests.hex(try t.contiguousBytes()), e["values_hex"]?.stringValue, "\(what): values", file: file, line: line)
                continue
            }
            let q = try XCTUnwrap(t.quantization, "\(what): no quantization parameters", file: file, line: line)
            XCTAssertEqual(q.schemeName, scheme, what, file: file, line: line)
            let (scales, zeroPoints) = try q.parameters()
            switch q {
            case .perTensor:
                XCTAssertEqual(scales, [try XCTUnwrap(e["scale"]?.numberValue?.doubleValue)], "\(what): scale", file: file, line: line)
                XCTAssertEqual(zeroPoints, [Double(try XCTUnwrap(e["zero_point"]?.numberValue?.intValue))], "\(what): zero point", file: file, line: line)
            case let .perChannel(s, z, axis):
                XCTAssertEqual(axis, e["axis"]?.numberValue?.intValue, "\(what): axis", file: file, line: line)
                XCTAssertEqual(scales, e["scales"]?.arrayValue?.compactMap { $0.numberValue?.doubleValue }, "\(what): scales", file: file, line: line)
                XCTAssertEqual(zeroPoints, e["zero_points"]?.arrayValue?.compactMap { $0.numberValue?.doubleValue }, "\(what): zero points", file: file, line: line)
                XCTAssertEqual(s.dtype.rawValue, e["scales_dtype"]?.stringValue, what, file: file, line: line)
                XCTAssertEqual(z.dtype.rawValue, e["zero_points_dtype"]?.stringValue, what, file: file, line: line)
            }
            XCTAssertEqual(GoldenFixtureTests.hex(try t.contiguousBytes()), e["int_repr_hex"]?.stringValue, "\(what): stored integers", file: file, line: line)
            let dequantized = try XCTUnwrap(e["dequantized"]?.arrayValue?.compactMap { $0.numberValue?.doubleValue }, what, file: file, line: line)
            XCTAssertEqual(try t.doubles(), dequantized, "\(what): dequantized values (torch's float32 arithmetic)", file: file, line: line)
        }
    }

    func testReadsWhatTorchLoadsAndRefusesWhatTorchFailsOn() throws {
        var read = 0, refused = 0
        for c in try Self.cases() {
            let loads = c.entry["loads"] == .bool(true)
            let ckpt: Checkpoint
            do {
                ckpt = try CheckpointReader.read(path: c.path)
            } catch let e as FormatError {
                // packed 4-bit tensors are the one kind torch loads that ckpt refuses, by design
                XCTAssertTrue(!loads || c.name == "quint4x2.pth",
                              "\(c.name): refused, but torch loads it: \(e)")
                XCTAssertTrue(e.kind == .unsupported || e.kind == .corrupt, "\(c.name): \(e)")
                refused += 1
                continue
            }
            XCTAssertTrue(loads, "\(c.name): read, but torch fails on it (\(c.entry["error"]?.stringValue ?? ""))")
            try assertMatches(ckpt, c)
            read += 1
        }
        XCTAssertGreaterThanOrEqual(read, 8)
        XCTAssertGreaterThanOrEqual(refused, 6)
    }

    /// A quantized checkpoint written back as `.pth` (`_rebuild_qtensor` with the same storage
    /// class, scheme and parameters) reads exactly as the original; fixtures/quantized/check_written.py
    /// loads such files in torch.
    func testWrittenBackReadsTheSame() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-quantized-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var written = 0
        for c in try Self.cases() where c.entry["loads"] == .bool(true) {
            guard let original = try? CheckpointReader.read(path: c.path) else { continue }
            let out = dir.appendingPathComponent(c.name).path
            try CheckpointWriter.write(original, to: out)
            try assertMatches(try CheckpointReader.read(path: out), c)
            written += 1
        }
        XCTAssertGreaterThanOrEqual(written, 8)
    }

    func testSafetensorsRefusesQuantizedTensorsInOneLine() throws {
        let c = try XCTUnwrap(try Self.cases().first { $0.name == "qtensors.pth" })
        let ckpt = try CheckpointReader.read(path: c.path)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-q-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        XCTAssertThrowsError(try CheckpointWriter.write(ckpt, to: out)) { e in
            XCTAssertTrue("\(e)".contains("quantized"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testDiffComparesDequantizedValues() throws {
        let c = try XCTUnwrap(try Self.cases().first { $0.name == "qtensors.pth" })
        let t = try CheckpointReader.read(path: c.path).tensors
        let quint8 = try XCTUnwrap(t.first { $0.path == "quint8" }?.tensor)
        XCTAssertTrue(try TensorDifference.compare(quint8, quint8).identical)
        // the same integers under another scale are different values
        var rescaled = quint8
        rescaled.quantization = .perTensor(scale: 0.1, zeroPoint: 7)
        let d = try TensorDifference.compare(quint8, rescaled)
        XCTAssertFalse(d.identical)
        let a = try quint8.doubles()
        XCTAssertEqual(d.maxAbsolute, a.map { abs($0) }.max()!, accuracy: 1e-6)  // 0.1 vs 0.05: the difference is |a|
        // against the float tensor torch's dequantize() gives: equal values, not identical
        let float = try Tensor(float32: a.map { Float($0) }, shape: quint8.shape)
        let f = try TensorDifference.compare(quint8, float)
        XCTAssertFalse(f.identical)
        XCTAssertEqual(f.maxAbsolute, 0)
    }

    /// Statistics and diffs go chunk by chunk (2^18 elements): each element keeps its channel's
    /// parameters across chunk boundaries.
    func testChunkedStatisticsAndDiffUseEachElementsChannel() throws {
        let rows = 3, columns = 300_007
        var bytes = [UInt8](repeating: 0, count: rows * columns)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7) }
        var q = try Tensor(dtype: .qint8, shape: [rows, columns], bytes: bytes)
        let scales = try Tensor(dtype: .float64, shape: [rows], bytes: [0.5, 0.25, 0.125].flatMap { withUnsafeBytes(of: $0) { Array($0) } })
        let zeroPoints = try Tensor(dtype: .int64, shape: [rows], bytes: [Int64(0), 3, -7].flatMap { withUnsafeBytes(of: $0) { Array($0) } })
        q.quantization = .perChannel(scales: scales, zeroPoints: zeroPoints, axis: 0)
        let values = try q.doubles()
        // the first element of each row uses that row's parameters
        for r in 0 ..< rows {
            let stored = Double(Int8(bitPattern: bytes[r * columns]))
            XCTAssertEqual(values[r * columns], (stored - [0, 3, -7][r]) * [0.5, 0.25, 0.125][r])
        }
        let stats = try TensorStats.compute(q)
        XCTAssertEqual(stats.min, values.min())
        XCTAssertEqual(stats.max, values.max())
        XCTAssertEqual(try XCTUnwrap(stats.mean), values.reduce(0, +) / Double(values.count), accuracy: 1e-9)
        // another scale on the last row only: exactly that row's elements differ
        var other = q
        let otherScales = try Tensor(dtype: .float64, shape: [rows], bytes: [0.5, 0.25, 0.5].flatMap { withUnsafeBytes(of: $0) { Array($0) } })
        other.quantization = .perChannel(scales: otherScales, zeroPoints: zeroPoints, axis: 0)
        let d = try TensorDifference.compare(q, other)
        XCTAssertFalse(d.identical)
        let expected = (0 ..< columns).filter { values[2 * columns + $0] != 0 }.count
        XCTAssertEqual(d.differingElements, expected)
        XCTAssertTrue(try TensorDifference.compare(q, q).identical)
    }
}
