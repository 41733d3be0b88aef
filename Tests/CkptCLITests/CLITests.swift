import CkptFormat
import Foundation
import XCTest

/// End-to-end tests of the built `ckpt` binary: stdout, stderr and exit code, against stored
/// snapshots (Tests/CkptCLITests/Snapshots; CKPT_UPDATE_SNAPSHOTS=1 rewrites them) and values.
final class CLITests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let snapshots = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Snapshots")

    typealias Result = CkptRun

    /// Runs ckpt with `args` in the repository root.
    func ckpt(_ args: String...) throws -> Result {
        try RunCkpt.run(args)
    }

    func assertSnapshot(_ r: Result, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = "exit \(r.status)\n--- stdout\n\(r.stdout)--- stderr\n\(r.stderr)"
        let url = Self.snapshots.appendingPathComponent(name + ".txt")
        if ProcessInfo.processInfo.environment["CKPT_UPDATE_SNAPSHOTS"] == "1" || !FileManager.default.fileExists(atPath: url.path) {
            try text.write(to: url, atomically: true, encoding: .utf8)
            if ProcessInfo.processInfo.environment["CKPT_UPDATE_SNAPSHOTS"] != "1" {
                XCTFail("snapshot \(name) was missing and has been written; check it in", file: file, line: line)
            }
            return
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        XCTAssertEqual(text, expected, "snapshot \(name) differs", file: file, line: line)
    }

    func json(_ r: Result) throws -> JSONValue {
        try JSONValue.parse(r.stdout)
    }

    func testInspectTextSnapshot() throws {
        try assertSnapshot(try ckpt("inspect", "fixtures/valid/cnn.pth"), "inspect-cnn")
    }

    func testInspectTreeOfLegacyFile() throws {
        try assertSnapshot(try ckpt("inspect", "--tree", "fixtures/valid/legacy_cnn.pth"), "inspect-tree-legacy")
    }

    func testInspectJSONOfNestedCheckpoint() throws {
        let r = try ckpt("inspect", "--json", "fixtures/valid/checkpoint.pth")
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.stderr, "")
        let j = try json(r)
        XCTAssertEqual(j["format"], .string("zip"))
        XCTAssertEqual(j["state_dict_root"], .string("model"))
        XCTAssertEqual(j["weights_only_loadable"], .bool(true))
        let tensors = j["tensors"]?.arrayValue ?? []
        XCTAssertEqual(tensors.first?["name"], .string("model.features.0.weight"))
        XCTAssertEqual(tensors.first?["dtype"], .string("float32"))
        let values = j["values"]?.arrayValue ?? []
        XCTAssertTrue(values.contains { $0["path"] == .string("epoch") && $0["value"] == .int(3) })
    }

    func testInspectStatsMatchTorch() throws {
        // values of views.pth 'base' are -4, -2.5, -1, 0.5, 2, 3.5, 5, 6.5, 8, 9.5, 11, 12.5
        let r = try ckpt("inspect", "--json", "--stats", "fixtures/valid/views.pth")
        XCTAssertEqual(r.status, 0)
        let base = try json(r)["tensors"]?.arrayValue?.first { $0["name"] == .string("base") }
        let stats = base?["stats"]
        XCTAssertEqual(stats?["min"]?.numberValue?.doubleValue, -4)
        XCTAssertEqual(stats?["max"]?.numberValue?.doubleValue, 12.5)
        XCTAssertEqual(stats?["mean"]?.numberValue?.doubleValue ?? 0, 4.25, accuracy: 1e-12)
        // torch.std (unbiased) of that arithmetic sequence
        XCTAssertEqual(stats?["std"]?.numberValue?.doubleValue ?? 0, 5.408326913195984, accuracy: 1e-9)
    }

    func testHostileFileIsRefusedInOneLine() throws {
        let r = try ckpt("inspect", "fixtures/hostile/files/os_system_reduce.pth")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
        try assertSnapshot(r, "inspect-hostile")
    }

    func testMissingFile() throws {
        let r = try ckpt("inspect", "no/such/file.pth")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "ckpt: no/such/file.pth: No such file or directory\n")
    }

    func testConvertDiffRoundTrip() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let st = dir.appendingPathComponent("cnn.safetensors").path
        let half = dir.appendingPathComponent("cnn16.pth").path
        XCTAssertEqual(try ckpt("convert", "fixtures/valid/cnn.pth", st).status, 0)
        XCTAssertEqual(try ckpt("diff", "fixtures/valid/cnn.pth", st).status, 0)
        XCTAssertEqual(try ckpt("convert", "--dtype", "float16", st, half).status, 0)
        let d = try ckpt("diff", "--json", "fixtures/valid/cnn.pth", half)
        XCTAssertEqual(d.status, 1)
        let j = try json(d)
        XCTAssertEqual(j["equal"], .bool(false))
        XCTAssertEqual(j["changed"]?.arrayValue?.count, 8, "every floating tensor changes dtype")
        // converting a file onto itself is refused and the input survives
        let before = try Data(contentsOf: URL(fileURLWithPath: st))
        let same = try ckpt("convert", st, st)
        XCTAssertEqual(same.status, 2)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: st)), before)
        // complex128 cannot go to safetensors: refused, nothing written
        let bad = dir.appendingPathComponent("dtypes.safetensors").path
        let r = try ckpt("convert", "fixtures/valid/dtypes.pth", bad)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("complex128"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [], "temporary files left behind")
    }

    func testDiffReportsKeysAndValues() throws {
        try assertSnapshot(try ckpt("diff", "fixtures/valid/dataparallel.pth", "fixtures/valid/compiled.pth"), "diff-prefixes")
    }

    func testDiffOfStateDictsIgnoresNestingAndWrappers() throws {
        // the DataParallel and torch.compile fixtures hold one architecture under different prefixes
        let plain = try json(try ckpt("diff", "--json", "fixtures/valid/dataparallel.pth", "fixtures/valid/compiled.pth"))
        XCTAssertEqual(plain["only_in_a"]?.arrayValue?.count, 9)
        let r = try ckpt("diff", "--json", "--state-dict", "fixtures/valid/dataparallel.pth", "fixtures/valid/compiled.pth")
        let j = try json(r)
        XCTAssertEqual(j["only_in_a"]?.arrayValue?.count, 0)
        XCTAssertEqual(j["only_in_b"]?.arrayValue?.count, 0)
        XCTAssertEqual(j["tensors"]?.arrayValue?.count, 9)
        // BatchNorm affine parameters and the counter were saved equal, the rest differ
        let equal = j["tensors"]?.arrayValue?.filter { $0["equal"] == .bool(true) }.compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(equal, ["features.1.weight", "features.1.bias", "features.1.num_batches_tracked"])
    }

    func testScanVerdictsAndExitCode() throws {
        let r = try ckpt("scan", "fixtures/valid/cnn.pth", "fixtures/valid/namespace.pth", "fixtures/hostile/files/os_system_reduce.pth", "fixtures/hostile/files/zip_trunc_50.pth")
        XCTAssertEqual(r.status, 1)
        try assertSnapshot(r, "scan")
        let j = try json(try ckpt("scan", "--json", "fixtures/valid/cnn.pth", "fixtures/valid/full_model.pth"))
        XCTAssertEqual(j.arrayValue?.map { $0["verdict"] }, [.string("tensor data only"), .string("references code")])
        // a plain pickle renamed .pth is run whole by torch.load(weights_only=False): its globals are listed
        let plain = try json(try ckpt("scan", "--json", "fixtures/hostile/files/plain_pickle_os_system.pth",
                                      "fixtures/hostile/files/plain_pickle_proto0_system.pth", "fixtures/hostile/files/plain_pickle_dict.pth"))
        XCTAssertEqual(plain.arrayValue?.map { $0["verdict"] }, [.string("references code"), .string("references code"), .string("malformed")])
        XCTAssertEqual(plain.arrayValue?.map { $0["disallowed_globals"] }, [.array([.string("os.system")]), .array([.string("posix.system")]), .array([])])
    }

    func testSalvageConvertOfPickledModuleGivesStateDict() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("sd.pth").path
        XCTAssertEqual(try ckpt("convert", "fixtures/valid/full_model.pth", out).status, 2, "refused without --salvage")
        XCTAssertEqual(try ckpt("convert", "--salvage", "fixtures/valid/full_model.pth", out).status, 0)
        let names = try json(try ckpt("inspect", "--json", out))["tensors"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(names?.first, "features.0.weight")
        XCTAssertEqual(names?.count, 9)
    }

    func testInitReportsWhatItWroteAsJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("s.safetensors").path
        let j = try json(try ckpt("init", "smallcnn", "--num-classes", "3", "--seed", "18446744073709551615", "--json", "-o", out))
        XCTAssertEqual(j["format"], .string("safetensors"))
        XCTAssertEqual(j["num_classes"], .int(3))
        XCTAssertEqual(j["tensors"], .int(10))
        XCTAssertEqual(j["seed"]?.numberValue?.uint64Value, UInt64.max)
        let listed = try json(try ckpt("inspect", "--json", out))["tensors"]?.arrayValue
        XCTAssertEqual(listed?.count, 10)
        XCTAssertEqual(j["bytes"], .int(listed?.reduce(0) { $0 + ($1["bytes"]?.numberValue?.intValue ?? 0) } ?? -1))
    }

    func testHelpIsAContract() throws {
        try assertSnapshot(try ckpt("--help"), "help")
    }

    func testEverySubcommandsHelpIsAContract() throws {
        for sub in ["inspect", "convert", "diff", "scan", "transplant", "finetune", "init", "zoo", "summary", "forward", "predict"] {
            try assertSnapshot(try ckpt("help", sub), "help-\(sub)")
        }
        try assertSnapshot(try ckpt("help", "bench", "read"), "help-bench-read")
        try assertSnapshot(try ckpt("help", "bench", "forward"), "help-bench-forward")
        try assertSnapshot(try ckpt("help", "bench", "train"), "help-bench-train")
    }
}
