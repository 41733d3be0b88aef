import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// The card's transplant on a full-size vgg19_bn: ckpt's SegNet holds, key for key, the tensors
/// the seed tutorial's own Python code (`nn.Sequential(*features[3:7])` …) takes from the same
/// vgg19_bn (fixtures/surgery/seed_segnet*.json, written by torch from the seed's code).
final class SeedSegNetTests: XCTestCase {
    func golden(_ name: String) throws -> [String: Any] {
        let url = RunCkpt.root.appendingPathComponent("fixtures/surgery/\(name)")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    func testSeedSegNetFromAFullVGG19BN() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-seed-segnet-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // vgg19_bn's contract as torch keys it; every tensor's values distinct from every other's
        let specs = try TransplantCommandTests.specs("vgg19_bn")
        var entries: [(String, Tensor)] = []
        for (k, s) in specs.enumerated() {
            let n = s.shape.reduce(1, *)
            if s.dtype == "int64" {
                entries.append((s.key, try Tensor(dtype: .int64, shape: s.shape, bytes: withUnsafeBytes(of: Int64(k + 1).littleEndian) { Array($0) })))
                continue
            }
            var v = [Float](repeating: Float(k + 1) * 0.001, count: n)
            for i in 0 ..< min(n, 16) { v[i] += Float(i) * 1e-4 }
            if s.key.hasSuffix("running_var") { for i in 0 ..< n { v[i] = abs(v[i]) + 0.5 } }
            entries.append((s.key, try Tensor(float32: v, shape: s.shape)))
        }
        let source = dir.appendingPathComponent("vgg19_bn.pth").path
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: entries.map { (.string($0.0), .tensor($0.1)) }, kind: .orderedDict)),
                                              info: FormatInfo(format: .zip)), to: source)
        entries = []
        let given = Dictionary(uniqueKeysWithValues: try CheckpointReader.read(path: source).tensors.map { ($0.path, $0.tensor) })

        for (file, extra) in [("seed_segnet.json", [String]()), ("seed_segnet_31.json", ["--num-classes", "31"])] {
            let g = try golden(file)
            let keys = try XCTUnwrap(g["keys"] as? [[String: Any]])
            let out = dir.appendingPathComponent("segnet.pth").path
            // the card's command as written: the user's enc1 rule, the recipe for the rest
            let r = try RunCkpt.run(["transplant", source, "--into", "segnet", "--map", "3:7=enc1", "-o", out, "--force"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            for block in ["enc1", "enc2", "enc3", "enc4", "enc5"] {
                XCTAssertTrue(r.stdout.contains("\(block) ← features["), "\(block): \(r.stdout)")
            }
            XCTAssertTrue(r.stdout.contains("enc5 ← features[40:]: max|Δ| 0"), r.stdout)
            let written = try CheckpointReader.read(path: out).tensors
            let byKey = Dictionary(uniqueKeysWithValues: written.map { ($0.path, $0.tensor) })
            XCTAssertEqual(Set(written.map(\.path)), Set(keys.compactMap { $0["key"] as? String }), file)
            // the seed registers `input` last; every other key comes in the seed's order
            XCTAssertEqual(written.map(\.path).filter { !$0.hasPrefix("input.") },
                           keys.compactMap { $0["key"] as? String }.filter { !$0.hasPrefix("input.") }, file)
            var fromSource = 0
            for k in keys {
                let key = try XCTUnwrap(k["key"] as? String)
                let t = try XCTUnwrap(byKey[key], key)
                XCTAssertEqual(t.shape, try XCTUnwrap(k["shape"] as? [Int]), key)
                XCTAssertEqual(t.dtype.rawValue, try XCTUnwrap(k["dtype"] as? String), key)
                if let src = k["source"] as? String {
                    XCTAssertEqual(try t.contiguousBytes(), try XCTUnwrap(given[src]).contiguousBytes(), "\(key) must be \(src) bit for bit")
                    fromSource += 1
                }
            }
            XCTAssertEqual(fromSource, 105)
            // keys the seed's list repetition shares are one storage in the file too
            for group in try XCTUnwrap(g["shared"] as? [[String]]) {
                let ids = Set(group.compactMap { byKey[$0].map { ObjectIdentifier($0.storage) } })
                XCTAssertEqual(ids.count, 1, "\(group)")
            }
        }
    }
}
