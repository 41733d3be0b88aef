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
}
