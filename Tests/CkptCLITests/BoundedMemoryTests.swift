import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Memory of `convert --dtype` and `diff` is bounded by a chunk, not by the tensors: measured
/// as the peak resident memory of the built binary (`/usr/bin/time`) on 128 MiB tensors.
final class BoundedMemoryTests: XCTestCase {
    /// 32 Mi float32 elements: 128 MiB, 64 MiB once cast to float16.
    static let elements = 32 << 20
    /// What the run may hold: the binary itself (~30 MiB) and a few chunk buffers, well under
    /// one cast tensor (64 MiB) on top of it, let alone the 128 MiB tensors.
    static let limitKiB = 80 << 10

    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-memory-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// A .pth with one big float32 tensor `w` (every element 1.5, but `changed` at index `at`) and a bias.
    private func write(_ name: String, changed: Float? = nil, at index: Int = 0) throws -> String {
        var values = [Float](repeating: 1.5, count: Self.elements)
        if let changed { values[index] = changed }
        let w = try Tensor(float32: values, shape: [Self.elements / 4096, 4096])
        let b = try Tensor(float32: [0.25, -2, 3], shape: [3])
        let path = dir.appendingPathComponent(name).path
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: [(.string("w"), .tensor(w)), (.string("b"), .tensor(b))], kind: .orderedDict)),
                                              info: FormatInfo(format: .zip)), to: path)
        return path
    }

    func testConvertWithACastStreamsEachStorageIntoThePth() throws {
        let source = try write("big.pth")
        for dtype in ["float16", "bfloat16"] {
            let out = dir.appendingPathComponent("big-\(dtype).pth").path
            let (r, peak) = try RunCkpt.measured(["convert", "--dtype", dtype, source, out])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertLessThan(peak, Self.limitKiB, "convert --dtype \(dtype) to .pth held \(peak) KiB: the cast is not streamed")
            print("convert --dtype \(dtype): peak \(peak) KiB")
            let back = try CheckpointReader.read(path: out)
            let w = try XCTUnwrap(back.tensors.first { $0.path == "w" }?.tensor)
            XCTAssertEqual(w.dtype.rawValue, dtype)
            XCTAssertEqual(w.shape, [Self.elements / 4096, 4096])
            // 1.5 is exact in both formats: the first and last rows read back as 1.5
            for offset in [0, Self.elements - 4096] {
                let row = try Tensor(storage: w.storage, dtype: w.dtype, shape: [4096], strides: [1], storageOffset: offset)
                XCTAssertEqual(Set(try row.doubles()), [1.5])
            }
            let b = try XCTUnwrap(back.tensors.first { $0.path == "b" }?.tensor)
            XCTAssertEqual(try b.doubles(), [0.25, -2, 3])
        }
    }

    func testDiffComparesInChunks() throws {
        let a = try write("a.pth")
        let b = try write("b.pth", changed: 1.75, at: Self.elements - 5)
        let (same, peakSame) = try RunCkpt.measured(["diff", a, a])
        XCTAssertEqual(same.status, 0, same.stderr)
        XCTAssertEqual(same.stdout, "equal: 2 tensors (bit-identical), other values equal\n")
        XCTAssertLessThan(peakSame, Self.limitKiB, "diff of two 128 MiB tensors held \(peakSame) KiB")
        let (r, peak) = try RunCkpt.measured(["diff", "--json", a, b])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertLessThan(peak, Self.limitKiB, "diff of two 128 MiB tensors held \(peak) KiB")
        print("diff: peak \(peakSame) KiB (equal), \(peak) KiB (different)")
        let j = try r.stdout.utf8CString.withUnsafeBytes { try JSONValue.parse(UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
        let rows = try XCTUnwrap(j["tensors"]?.arrayValue)
        let w = try XCTUnwrap(rows.first { $0["name"]?.stringValue == "w" })
        XCTAssertEqual(w["differing_elements"], .int(1))
        XCTAssertEqual(w["max_abs_diff"], .double(0.25))
        XCTAssertEqual(w["identical"], .bool(false))
        XCTAssertEqual(rows.first { $0["name"]?.stringValue == "b" }?["identical"], .bool(true))
    }

    /// Files larger than the address space ckpt may use still open: under `ulimit -v 400000`
    /// (390 MiB, the binary and its libraries taking a third of it) a 288 MiB checkpoint cannot
    /// be mapped whole; its zip directory and pickle are read with pread and each record is read
    /// with pread or mapped alone. "Cannot map" is an I/O error, never "malformed".
    func testFilesLargerThanTheAddressSpaceStillOpen() throws {
        let limit = "ulimit -v 400000"
        let elements = 72 << 20
        let w = try Tensor(float32: [Float](repeating: 1.5, count: elements), shape: [elements / 4096, 4096])
        let b = try Tensor(float32: [0.25, -2, 3], shape: [3])
        let big = dir.appendingPathComponent("big.pth").path
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: [(.string("w"), .tensor(w)), (.string("b"), .tensor(b))], kind: .orderedDict)),
                                              info: FormatInfo(format: .zip)), to: big)
        let inspect = try RunCkpt.run(["inspect", "--json", big], under: limit)
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("\"w\""), inspect.stdout)
        let scan = try RunCkpt.run(["scan", big], under: limit)
        XCTAssertEqual(scan.status, 0, scan.stderr)
        XCTAssertTrue(scan.stdout.hasPrefix("\(big): tensor data only (zip)"), scan.stdout)
        let stats = try RunCkpt.run(["inspect", "--stats", "--json", big], under: limit)
        XCTAssertEqual(stats.status, 0, stats.stderr)
        let j = try stats.stdout.utf8CString.withUnsafeBytes { try JSONValue.parse(UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
        let row = try XCTUnwrap(j["tensors"]?.arrayValue?.first { $0["name"]?.stringValue == "w" })
        XCTAssertEqual(row["stats"]?["min"], .double(1.5))
        XCTAssertEqual(row["stats"]?["max"], .double(1.5))
        // convert (both formats, with a cast) and diff work under the limit too
        let st = dir.appendingPathComponent("big.safetensors").path
        XCTAssertEqual(try RunCkpt.run(["convert", big, st], under: limit).status, 0)
        let half = dir.appendingPathComponent("half.pth").path
        XCTAssertEqual(try RunCkpt.run(["convert", "--dtype", "float16", st, half], under: limit).status, 0)
        let d = try RunCkpt.run(["diff", big, st], under: limit)
        XCTAssertEqual(d.status, 0, d.stderr)
        XCTAssertEqual(d.stdout, "equal: 2 tensors (bit-identical), other values equal\n")
        let dh = try RunCkpt.run(["diff", "--tensors-only", "--atol", "0", big, half], under: limit)
        XCTAssertEqual(dh.status, 1, dh.stderr)
        XCTAssertTrue(dh.stdout.contains("changed: w: float32 [18432, 4096] -> float16 [18432, 4096]"), dh.stdout)

        // a legacy file (its pickles and data interleave: it needs the whole file mapped) of the
        // same size: one line saying it cannot be mapped, exit 2 (which also shows the limit is
        // real: big.pth could not be mapped whole either); scan calls it unreadable
        let legacy = dir.appendingPathComponent("legacy.pth").path
        try FileManager.default.copyItem(atPath: RunCkpt.root.appendingPathComponent("fixtures/valid/legacy_cnn.pth").path, toPath: legacy)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: legacy))
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: big)[.size] as? Int)
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
        let l = try RunCkpt.run(["inspect", legacy], under: limit)
        XCTAssertEqual(l.status, 2)
        XCTAssertEqual(l.stderrLines.count, 1, l.stderr)
        XCTAssertTrue(l.stderr.hasPrefix("ckpt: \(legacy): cannot map \(size) bytes at offset 0: Cannot allocate memory"), l.stderr)
        let ls = try RunCkpt.run(["scan", legacy], under: limit)
        XCTAssertEqual(ls.status, 2, ls.stdout + ls.stderr)
        XCTAssertFalse((ls.stdout + ls.stderr).contains("malformed"), ls.stdout + ls.stderr)
    }
}
