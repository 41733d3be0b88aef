import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Outputs never destroy anything: devices, FIFOs and sockets are refused, and temporary files a
/// killed run left behind are removed by the next run that writes beside them.
final class OutputSafetyTests: XCTestCase {
    func testDevicesAndFIFOsAreRefused() throws {
        let r = try RunCkpt.run(["convert", "fixtures/valid/cnn.pth", "/dev/null"])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderrLines, ["ckpt: /dev/null: is a device; ckpt writes regular files only (it would replace the device node)"])
        var st = stat()
        XCTAssertEqual(stat("/dev/null", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFCHR, "/dev/null must still be a device")

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-out-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("pipe").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let f = try RunCkpt.run(["convert", "fixtures/valid/cnn.pth", fifo])
        XCTAssertEqual(f.status, 2)
        XCTAssertEqual(f.stderrLines, ["ckpt: \(fifo): is a FIFO; ckpt writes regular files only"])
    }

    func testAHugeExpansionOfViewsIsRefusedUnlessAsked() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-expand-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // one float, viewed 300 million times (stride 0): 4 bytes in a .pth, 1.2 GB as safetensors
        let storage = Storage(key: "0", dtype: .float32, bytes: [0, 0, 128, 63])
        let view = try Tensor(storage: storage, dtype: .float32, shape: [300_000_000], strides: [0], storageOffset: 0)
        let source = dir.appendingPathComponent("views.pth").path
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: [(.string("w"), .tensor(view))])), info: FormatInfo(format: .zip)), to: source)
        let out = dir.appendingPathComponent("views.safetensors").path
        let r = try RunCkpt.run(["convert", source, out])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderrLines.count, 1)
        XCTAssertTrue(r.stderr.contains("pass --allow-expand to write it"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // to .pth the view stays a view
        XCTAssertEqual(try RunCkpt.run(["convert", source, dir.appendingPathComponent("again.pth").path]).status, 0)
    }

    func testStaleTemporaryFilesOfDeadRunsAreRemoved() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-stale-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // a pid that cannot be alive (above pid_max), and this test's own live pid
        let dead = dir.appendingPathComponent(".out.pth.tmp-2147483646-abc").path
        let live = dir.appendingPathComponent(".out.pth.tmp-\(getpid())-abc").path
        for p in [dead, live] { XCTAssertTrue(FileManager.default.createFile(atPath: p, contents: Data([1]))) }
        let r = try RunCkpt.run(["convert", "fixtures/valid/cnn.pth", dir.appendingPathComponent("out.pth").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dead))
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "a live process's temporary file is kept")
    }
}

/// A checkpoint truncated while ckpt reads it: one line and exit 2, or a finished run — never a
/// death by signal, never a temporary file left behind.
final class ShrinkingInputTests: XCTestCase {
    func testTruncatedUnderneathEndsCleanly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-shrink-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // 64 tensors of 1 MiB: long enough to be cut while converting
        let source = dir.appendingPathComponent("big.pth").path
        var items: [(key: Value, value: Value)] = []
        for i in 0 ..< 64 {
            items.append((.string("w\(i)"), .tensor(try Tensor(float32: [Float](repeating: Float(i), count: 1 << 18), shape: [1 << 18]))))
        }
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: items)), info: FormatInfo(format: .zip)), to: source)
        for delay in [0.0, 0.02, 0.05] {
            let (reason, status, stderr) = try RunCkpt.convertWhileTruncating(source, in: dir, delay: delay)
            XCTAssertEqual(reason, .exit, "killed by a signal: \(stderr)")
            XCTAssertTrue([0, 2].contains(status), stderr)
            if status == 2 { XCTAssertEqual(stderr.split(separator: "\n").count, 1, stderr) }
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }
            XCTAssertEqual(leftovers, [], "temporary files left after delay \(delay)")
        }
    }
}
