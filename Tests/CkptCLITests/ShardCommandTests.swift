import CkptFormat
import Foundation
import XCTest

/// The commands on sharded and distributed checkpoints, through the built binary: one argument
/// names the whole checkpoint, broken ones exit 2 with one line naming index, shard or key.
final class ShardCommandTests: XCTestCase {
    func testCommandsTakeAFolderIndexOrDCPAsOneCheckpoint() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-shardcli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inspect = try RunCkpt.run(["inspect", "--json", "fixtures/shards/hf_safetensors"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let j = try JSONValue.parse(inspect.stdout)
        XCTAssertEqual(j["assembled_from"]?.stringValue, "3 safetensors shards listed in model.safetensors.index.json")

        let r = try RunCkpt.run(["convert", "fixtures/shards/dcp", dir + "/out", "--max-shard-size", "3KB", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try JSONValue.parse(r.stdout)
        XCTAssertEqual(report["max_shard_size"]?.numberValue?.intValue, 3000)
        XCTAssertEqual(report["shards"]?.arrayValue?.count, 3)
        XCTAssertEqual(report["values_not_written"]?.arrayValue?.count, 6)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/out/model.safetensors.index.json"))
        let d = try RunCkpt.run(["diff", "--tensors-only", "fixtures/shards/dcp", dir + "/out"])
        XCTAssertEqual(d.status, 0, d.stdout + d.stderr)
        let s = try RunCkpt.run(["scan", "fixtures/shards/dcp", "fixtures/shards/hf_bin"])
        XCTAssertEqual(s.status, 0, s.stdout + s.stderr)
        let pth = try RunCkpt.run(["convert", "fixtures/shards/dcp_chunked", dir + "/one.pth"])
        XCTAssertEqual(pth.status, 0, pth.stderr)
        XCTAssertEqual(try RunCkpt.run(["diff", "fixtures/shards/dcp_chunked", dir + "/one.pth"]).status, 0)
    }

    func testBrokenShardsExitTwoWithOneLine() throws {
        for (folder, mention) in [("missing_shard", "shard file is missing"), ("duplicate_key", "in two shards"),
                                  ("escaping_path", "escaping"), ("dcp_truncated", "past the end")] {
            let r = try RunCkpt.run(["inspect", "fixtures/shards/broken/" + folder])
            XCTAssertEqual(r.status, 2, folder)
            XCTAssertEqual(r.stderrLines.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(mention), r.stderr)
        }
    }

    func testBadShardSizeIsAUsageError() throws {
        let r = try RunCkpt.run(["convert", "fixtures/valid/cnn.pth", "/tmp/never-written", "--max-shard-size", "2XB"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--max-shard-size"), r.stderr)
    }
}
