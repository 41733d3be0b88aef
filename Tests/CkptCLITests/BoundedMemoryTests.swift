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

    /// Reading a file's structure touches no tensor page: the zip directory and local headers
    /// are read with pread (through the mapping, fault-around made 64 KiB per record resident:
    /// 12,000 torch-written tensors of 64 KiB held 813 MiB), so `inspect` and `scan` of 2,000
    /// tensors of 64 KiB (125 MiB, all in the page cache after writing) stay far below the file.
    func testInspectAndScanDoNotFaultInTensorPages() throws {
        var items: [(key: Value, value: Value)] = []
        for i in 0 ..< 2000 {
            items.append((.string("layer\(i).weight"), .tensor(try Tensor(float32: [Float](repeating: Float(i), count: 16384), shape: [16384]))))
        }
        let path = dir.appendingPathComponent("many.pth").path
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: items, kind: .orderedDict)), info: FormatInfo(format: .zip)), to: path)
        let limit = 64 << 10
        for args in [["inspect", path], ["scan", path]] {
            let (r, peak) = try RunCkpt.measured(args)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertLessThan(peak, limit, "\(args[0]) of 2,000 tensors of 64 KiB held \(peak) KiB: tensor pages were faulted in")
            print("\(args[0]) of 2,000 tensors of 64 KiB: peak \(peak) KiB")
        }
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

    }
}

/// A legacy (`_use_new_zipfile_serialization=False`) or tar (torch < 0.1.10) stream of float32
/// tensors, built byte by byte and written sparse: each tensor's data is zeros but its last
/// element, so a file of gigabytes takes a moment and no disk.
struct StreamFile {
    /// (name, element count, last element) of each tensor, one storage each.
    var tensors: [(name: String, count: Int, last: Float)]

    private var pieces: [(offset: Int, bytes: [UInt8])] = []
    private var size = 0

    init(tensors: [(name: String, count: Int, last: Float)]) { self.tensors = tensors }

    private static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    private static func text(_ s: String) -> [UInt8] { [0x58] + le(UInt32(s.utf8.count)) + Array(s.utf8) }      // BINUNICODE
    private static func global(_ m: String, _ n: String) -> [UInt8] { [0x63] + Array("\(m)\n\(n)\n".utf8) }  // GLOBAL
    private static func int(_ v: Int) -> [UInt8] { [0x4A] + le(Int32(v)) }                                     // BININT
    private static func pickle(_ body: [UInt8]) -> [UInt8] { [0x80, 0x02] + body + [0x2E] }

    private mutating func append(_ b: [UInt8]) {
        pieces.append((size, b))
        size += b.count
    }

    /// A storage's data: zeros (a hole) but the last element.
    private mutating func data(count: Int, last: Float) {
        size += (count - 1) * 4
        append(Self.le(last.bitPattern))
    }

    private func write(to path: String) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        for (o, b) in pieces {
            try h.seek(toOffset: UInt64(o))
            try h.write(contentsOf: b)
        }
        try h.truncate(atOffset: UInt64(size))
        try h.close()
    }

    /// Writes the legacy magic-number stream: magic, protocol, sys_info, the state dict, the
    /// storage keys, then `i64 numel` + bytes per storage.
    func writeLegacy(to path: String) throws {
        var f = self
        f.append(Self.pickle([0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]))
        f.append(Self.pickle([0x4D, 0xE9, 0x03]))
        f.append(Self.pickle([0x7D]))
        var main: [UInt8] = [0x7D, 0x28]
        for (i, t) in tensors.enumerated() {
            main += Self.text(t.name) + Self.global("torch._utils", "_rebuild_tensor_v2") + [0x28]
            main += [0x28] + Self.text("storage") + Self.global("torch", "FloatStorage") + Self.text(String(i)) + Self.text("cpu")
            main += Self.int(t.count) + [0x4E, 0x74, 0x51]  // view None, TUPLE, BINPERSID
            main += [0x4B, 0x00] + Self.int(t.count) + [0x85, 0x4B, 0x01, 0x85, 0x89]
            main += Self.global("collections", "OrderedDict") + [0x29, 0x52, 0x74, 0x52]
        }
        f.append(Self.pickle(main + [0x75]))
        f.append(Self.pickle([0x5D, 0x28] + tensors.indices.flatMap { Self.text(String($0)) } + [0x65]))
        for t in tensors {
            f.append(Self.le(Int64(t.count)))
            f.data(count: t.count, last: t.last)
        }
        try f.write(to: path)
    }

    /// One ustar member header.
    private static func tarHeader(_ name: String, size: Int) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int) { for (i, c) in s.utf8.enumerated() { h[at + i] = c } }
        put(name, 0)
        put("0000644", 100); put("0000000", 108); put("0000000", 116)
        let octal = String(size, radix: 8)
        put(String(repeating: "0", count: 11 - octal.count) + octal, 124)
        put("00000000000", 136)
        h[156] = UInt8(ascii: "0")
        put("ustar", 257); put("00", 263)
        put("        ", 148)
        let sum = String(h.reduce(0) { $0 + Int($1) }, radix: 8)
        put(String(repeating: "0", count: 6 - sum.count) + sum, 148)
        h[154] = 0; h[155] = 0x20
        return h
    }

    /// Writes the tar form: members `sys_info`, `pickle`, `tensors`, then `storages` (count,
    /// then per storage (key, location, class) + `i64 numel` + bytes, then the view list).
    func writeTar(to path: String) throws {
        var f = self
        func member(_ name: String, _ body: [UInt8]) {
            f.append(Self.tarHeader(name, size: body.count))
            f.append(body + [UInt8](repeating: 0, count: (512 - body.count % 512) % 512))
        }
        member("sys_info", Self.pickle([0x7D]))
        var main: [UInt8] = [0x7D, 0x28]
        // as torch wrote them: tensors keyed by ints, which the main pickle names as strings
        for (i, t) in tensors.enumerated() { main += Self.text(t.name) + Self.text(String(i)) + [0x51] }
        member("pickle", Self.pickle(main + [0x75]))
        var tb = Self.pickle(Self.int(tensors.count))
        for (i, t) in tensors.enumerated() {
            tb += Self.pickle(Self.int(i) + Self.text("s\(i)") + Self.global("torch", "FloatTensor") + [0x87])
            tb += Self.le(Int32(1)) + [0, 0, 0, 0] + Self.le(Int64(t.count)) + Self.le(Int64(1)) + Self.le(Int64(0))
        }
        member("tensors", tb)
        let dataBytes = tensors.reduce(0) { $0 + 8 + $1.count * 4 }
        var head = Self.pickle(Self.int(tensors.count))
        var headers: [[UInt8]] = []
        for i in tensors.indices {
            headers.append(Self.pickle(Self.text("s\(i)") + Self.text("cpu") + Self.global("torch", "FloatStorage") + [0x87]))
        }
        let views = Self.pickle([0x5D])
        let total = head.count + headers.reduce(0) { $0 + $1.count } + dataBytes + views.count
        f.append(Self.tarHeader("storages", size: total))
        for (t, h) in zip(tensors, headers) {
            head += h + Self.le(Int64(t.count))
            f.append(head)
            head = []
            f.data(count: t.count, last: t.last)
        }
        f.append(views + [UInt8](repeating: 0, count: (512 - total % 512) % 512))
        f.append([UInt8](repeating: 0, count: 1024))
        try f.write(to: path)
    }
}

/// Legacy and tar files interleave pickles and tensor data: they too open without a whole-file
/// mapping (pickles run in windows, record headers are read with pread), so they work under an
/// address-space limit smaller than the file, and end cleanly when cut while read.
final class StreamFormatMemoryTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-stream-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// 109 Mi float32 elements: a 436 MB file, larger than the whole 390 MiB address space
    /// `ulimit -v 400000` leaves, so it cannot be mapped whole whatever else is mapped.
    static let elements = 26 << 22
    static let limit = "ulimit -v 400000"

    private func big() -> StreamFile {
        StreamFile(tensors: [("w", Self.elements, 2.5), ("b", 3, -2)])
    }

    func testLegacyAndTarFilesLargerThanTheAddressSpaceStillOpen() throws {
        let legacy = dir.appendingPathComponent("legacy.pth").path
        let tar = dir.appendingPathComponent("tar.pth").path
        try big().writeLegacy(to: legacy)
        try big().writeTar(to: tar)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: legacy)[.size] as? Int)
        XCTAssertGreaterThan(size, 400_000 * 1024, "the file must not fit the address space")
        for (path, format) in [(legacy, "legacy"), (tar, "tar")] {
            let scan = try RunCkpt.run(["scan", path], under: Self.limit)
            XCTAssertEqual(scan.status, 0, scan.stderr)
            XCTAssertTrue(scan.stdout.hasPrefix("\(path): tensor data only (\(format))"), scan.stdout)
            let inspect = try RunCkpt.run(["inspect", "--json", path], under: Self.limit)
            XCTAssertEqual(inspect.status, 0, inspect.stderr)
            let j = try inspect.stdout.utf8CString.withUnsafeBytes { try JSONValue.parse(UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
            let rows = try XCTUnwrap(j["tensors"]?.arrayValue)
            XCTAssertEqual(rows.map { $0["name"]?.stringValue }, ["w", "b"])
            XCTAssertEqual(rows.first?["shape"], .array([.int(Self.elements)]))
        }
        let stats = try RunCkpt.run(["inspect", "--stats", "--json", legacy], under: Self.limit)
        XCTAssertEqual(stats.status, 0, stats.stderr)
        let j = try stats.stdout.utf8CString.withUnsafeBytes { try JSONValue.parse(UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
        let w = try XCTUnwrap(j["tensors"]?.arrayValue?.first { $0["name"]?.stringValue == "w" })
        XCTAssertEqual(w["stats"]?["min"], .double(0))
        XCTAssertEqual(w["stats"]?["max"], .double(2.5))
        // the two streams hold the same tensors; converted to safetensors they read back the same
        let d = try RunCkpt.run(["diff", legacy, tar], under: Self.limit)
        XCTAssertEqual(d.status, 0, d.stderr)
        XCTAssertEqual(d.stdout, "equal: 2 tensors (bit-identical), other values equal\n")
        let st = dir.appendingPathComponent("tar.safetensors").path
        let c = try RunCkpt.run(["convert", tar, st], under: Self.limit)
        XCTAssertEqual(c.status, 0, c.stderr)
        try FileManager.default.removeItem(atPath: tar)
        let back = try CheckpointReader.read(path: st)
        let b = try XCTUnwrap(back.tensors.first { $0.path == "b" }?.tensor)
        XCTAssertEqual(try b.doubles(), [0, 0, -2])
        let bw = try XCTUnwrap(back.tensors.first { $0.path == "w" }?.tensor)
        let tail = try Tensor(storage: bw.storage, dtype: .float32, shape: [2], strides: [1], storageOffset: Self.elements - 2)
        XCTAssertEqual(try tail.doubles(), [0, 2.5])
        let ds = try RunCkpt.run(["diff", st, legacy], under: Self.limit)
        XCTAssertEqual(ds.status, 0, ds.stderr)
    }

    /// Pickles longer than the first window a windowed stream reads them in (1 MiB): the window
    /// grows, and what is read is what a whole mapping gives; no whole-file mapping is made.
    func testLongPicklesReadTheSameThroughGrowingWindows() throws {
        let n = 12_000
        let f = StreamFile(tensors: (0 ..< n).map { ("layer\($0).weight", 3, Float($0)) })
        for format in ["legacy", "tar"] {
            let path = dir.appendingPathComponent("\(format).pth").path
            if format == "legacy" { try f.writeLegacy(to: path) } else { try f.writeTar(to: path) }
            let region = try ByteRegion.open(path: path, whole: false)
            let windowed = try CheckpointReader.read(region: region, file: path)
            XCTAssertFalse(region.isMapped, "the file was mapped whole")
            let mapped = try CheckpointReader.read(region: try ByteRegion.open(path: path, whole: true), file: path)
            XCTAssertEqual(windowed.info.format.rawValue, format)
            let a = windowed.tensors, b = mapped.tensors
            XCTAssertEqual(a.count, n)
            XCTAssertEqual(a.map(\.path), b.map(\.path))
            XCTAssertEqual(a.last?.path, "layer11999.weight")
            for i in [0, 1, n / 2, n - 1] {
                XCTAssertEqual(try a[i].tensor.doubles(), [0, 0, Double(i)], "\(format) tensor \(i)")
                XCTAssertEqual(try a[i].tensor.doubles(), try b[i].tensor.doubles())
            }
        }
    }

    /// Cut to 4 KiB while `convert` reads it, mapped whole or (under the address-space limit)
    /// through windows: one line and exit 2, or a finished run; never a signal, never a
    /// temporary file left.
    func testLegacyAndTarCutWhileReadEndCleanly() throws {
        let small = StreamFile(tensors: (0 ..< 64).map { ("w\($0)", 1 << 18, 1) })
        for format in ["legacy", "tar"] {
            for setup in ["true", Self.limit] {
                let source = dir.appendingPathComponent("source.pth").path
                // the windowed run needs a file too large to map whole
                let f = setup == "true" ? small : StreamFile(tensors: small.tensors + [("big", Self.elements, 1)])
                if format == "legacy" { try f.writeLegacy(to: source) } else { try f.writeTar(to: source) }
                for delay in [0.0, 0.02, 0.05] {
                    let (reason, status, stderr) = try RunCkpt.convertWhileTruncating(source, in: dir, delay: delay, setup: setup)
                    let what = "\(format), \(setup), delay \(delay)"
                    XCTAssertEqual(reason, .exit, "killed by a signal (\(what)): \(stderr)")
                    XCTAssertTrue([0, 2].contains(status), "\(what): \(stderr)")
                    if status == 2 { XCTAssertEqual(stderr.split(separator: "\n").count, 1, "\(what): \(stderr)") }
                    let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }
                    XCTAssertEqual(leftovers, [], "temporary files left (\(what))")
                    try? FileManager.default.removeItem(at: dir.appendingPathComponent("out.safetensors"))
                }
            }
        }
    }
}
