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
