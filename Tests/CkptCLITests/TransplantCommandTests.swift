import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// `ckpt transplant` end to end on the built binary: nested and prefixed sources, new heads,
/// kept classes, adapted input convs, casts, templates with `--auto`, gates, the plan file, and
/// every bad input as one line with nothing left behind.
final class TransplantCommandTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-transplant-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func ckpt(_ args: String...) throws -> CkptRun { try RunCkpt.run(args) }

    /// torchvision's state-dict contract of `model` (fixtures/zoo/keys.json, written by torch).
    static func specs(_ model: String) throws -> [(key: String, shape: [Int], dtype: String)] {
        let url = RunCkpt.root.appendingPathComponent("fixtures/zoo/keys.json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let entry = try XCTUnwrap((json["models"] as? [String: Any])?[model] as? [String: Any])
        return try XCTUnwrap(entry["keys"] as? [[Any]]).map { k in
            (try XCTUnwrap(k[0] as? String), try XCTUnwrap(k[1] as? [Int]), try XCTUnwrap(k[2] as? String))
        }
    }

    /// Distinct values per entry: entry k, element i is `sin(0.37·i + 0.11·k) / √fan`; counters are k.
    static func formula(_ specs: [(key: String, shape: [Int], dtype: String)]) throws -> [(String, Tensor)] {
        try specs.enumerated().map { k, spec in
            let n = spec.shape.reduce(1, *)
            if spec.dtype == "int64" {
                return (spec.key, try Tensor(dtype: .int64, shape: spec.shape, bytes: withUnsafeBytes(of: Int64(k).littleEndian) { Array($0) }))
            }
            let fan = Double(spec.shape.dropFirst().reduce(1, *))
            let values = (0 ..< n).map { i -> Float in
                let s = sin(0.37 * Double(i) + 0.11 * Double(k))
                if spec.key.hasSuffix("running_var") { return Float(0.5 + 0.25 * (1 + s)) }
                return Float(spec.shape.count >= 2 ? s / fan.squareRoot() : 0.1 * s + (spec.key.hasSuffix("weight") ? 1 : 0))
            }
            return (spec.key, try Tensor(float32: values, shape: spec.shape))
        }
    }

    @discardableResult
    func write(_ entries: [(String, Tensor)], to name: String, nest: String? = nil) throws -> String {
        var root = Value.dict(PyDict(items: entries.map { (.string($0.0), .tensor($0.1)) }, kind: .orderedDict))
        if let nest { root = .dict(PyDict(items: [(.string("epoch"), .int(3)), (.string(nest), root), (.string("optimizer_state_dict"), .dict(PyDict(items: [])))])) }
        try CheckpointWriter.write(Checkpoint(root: root, info: FormatInfo(format: .zip)), to: path(name))
        return path(name)
    }

    func read(_ path: String) throws -> [(path: String, tensor: Tensor)] { try CheckpointReader.read(path: path).tensors }

    static func bits(_ t: Tensor) throws -> [UInt8] { try t.contiguousBytes() }

    // MARK: the seed's workflows

    func testNestedDataParallelCheckpointGetsANewHeadAndAProof() throws {
        let specs = try Self.specs("resnet18")
        let weights = try Self.formula(specs)
        let source = try write(weights.map { ("module." + $0.0, $0.1) }, to: "resnet18-ddp.pth", nest: "model_state_dict")
        let out = path("resnet18_5.pth")
        let r = try ckpt("transplant", source, "--into", "resnet18", "--num-classes", "5", "-o", out, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONValue.parse(r.stdout)
        XCTAssertEqual(j["state_dict_root"], .string("model_state_dict"))
        XCTAssertEqual(j["wrapper_prefix"], .string("module."))
        XCTAssertEqual(j["copied"]?.arrayValue?.count, specs.count - 2)
        XCTAssertEqual(j["reinitialized"]?.arrayValue?.compactMap { $0["key"]?.stringValue }, ["fc.weight", "fc.bias"])
        XCTAssertEqual(j["reinitialized"]?.arrayValue?.first?["requested"], .bool(true))
        XCTAssertEqual(j["missing"]?.arrayValue?.count, 0)
        XCTAssertEqual(j["unused"]?.arrayValue?.compactMap { $0["key"]?.stringValue }, ["fc.weight", "fc.bias"])
        let proof = try XCTUnwrap(j["verification"]?.arrayValue)
        XCTAssertEqual(proof.compactMap { $0["block"]?.stringValue }, ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"])
        XCTAssertTrue(proof.allSatisfy { $0["max_abs_diff"]?.numberValue?.doubleValue == 0 && $0["passed"] == .bool(true) }, "\(proof)")

        // the file: torchvision's keys in order, every copied tensor bit for bit, a 5-class head
        let written = try read(out)
        XCTAssertEqual(written.map(\.path), specs.map(\.key))
        let given = Dictionary(uniqueKeysWithValues: weights)
        for (k, t) in written where !k.hasPrefix("fc.") {
            XCTAssertEqual(t.dtype, given[k]?.dtype, k)
            XCTAssertEqual(try Self.bits(t), try Self.bits(try XCTUnwrap(given[k])), k)
        }
        XCTAssertEqual(written.first { $0.path == "fc.weight" }?.tensor.shape, [5, 512])
        let bound = 1 / Float(512).squareRoot()
        XCTAssertTrue(try XCTUnwrap(written.first { $0.path == "fc.weight" }?.tensor).floats().allSatisfy { abs($0) <= bound })

        // the plan file: the source's SHA-256 (as sha256sum computes it), the seed, the proof
        let plan = try JSONValue.parse(String(decoding: try Data(contentsOf: URL(fileURLWithPath: out + ".plan.json")), as: UTF8.self))
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/sha256sum") {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            p.arguments = [source]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(plan["source_sha256"], .string(String(text.prefix(64))))
        }
        XCTAssertEqual(plan["seed"], .int(0))
        XCTAssertEqual(plan["verification"]?.arrayValue?.count, 6)
        XCTAssertEqual(plan["output"], .string(out))

        // the same seed gives the same head; the text report says where the state dict was
        let again = try ckpt("transplant", source, "--into", "resnet18", "--num-classes", "5", "-o", path("again.pth"))
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("[model_state_dict] without 'module.'"), again.stdout)
        XCTAssertTrue(again.stdout.contains("layer4 ← layer4: max|Δ| 0"), again.stdout)
        XCTAssertEqual(try Self.bits(try XCTUnwrap(read(path("again.pth")).first { $0.path == "fc.weight" }?.tensor)),
                       try Self.bits(try XCTUnwrap(written.first { $0.path == "fc.weight" }?.tensor)))
    }

    func testKeepClassesKeepsTheTrainedRows() throws {
        var specs = try Self.specs("resnet18")
        specs[specs.count - 2].shape = [4, 512]
        specs[specs.count - 1].shape = [4]
        let weights = try Self.formula(specs)
        let source = try write(weights, to: "four.pth")
        // a byte-order mark and CRLF line ends, as Windows editors write them: read as predict reads labels
        try "\u{FEFF}cat\r\ndog\r\nfox\r\nowl\r\n".write(toFile: path("old.txt"), atomically: true, encoding: .utf8)
        try "owl\ncat\nbee\n".write(toFile: path("new.txt"), atomically: true, encoding: .utf8)
        let out = path("three.pth")
        let r = try ckpt("transplant", source, "--into", "resnet18", "--keep-classes", path("old.txt"), path("new.txt"), "-o", out)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("kept 2 of 3 classes, others re-initialised"), r.stdout)
        let w = try XCTUnwrap(read(out).first { $0.path == "fc.weight" }?.tensor).floats()
        let old = try XCTUnwrap(weights.first { $0.0 == "fc.weight" }?.1).floats()
        XCTAssertEqual(w.count, 3 * 512)
        XCTAssertEqual(Array(w[0 ..< 512]), Array(old[3 * 512 ..< 4 * 512]))  // owl
        XCTAssertEqual(Array(w[512 ..< 1024]), Array(old[0 ..< 512]))  // cat
        XCTAssertNotEqual(Array(w[1024 ..< 1536]), Array(old[1024 ..< 1536]))  // bee: fresh
        let b = try XCTUnwrap(read(out).first { $0.path == "fc.bias" }?.tensor).floats()
        let oldBias = try XCTUnwrap(weights.first { $0.0 == "fc.bias" }?.1).floats()
        XCTAssertEqual([b[0], b[1]], [oldBias[3], oldBias[0]])

        try "a\nb\n".write(toFile: path("short.txt"), atomically: true, encoding: .utf8)
        let bad = try ckpt("transplant", source, "--into", "resnet18", "--keep-classes", path("short.txt"), path("new.txt"), "-o", path("bad.pth"))
        XCTAssertEqual(bad.status, 2)
        XCTAssertEqual(bad.stderrLines, ["ckpt: --keep-classes: 2 old labels for a source head of 4 classes (fc.weight), 3 new labels for a target head of 3 (fc.weight)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("bad.pth")))
        try "\n\n".write(toFile: path("empty.txt"), atomically: true, encoding: .utf8)
        let empty = try ckpt("transplant", source, "--into", "resnet18", "--keep-classes", path("empty.txt"), path("new.txt"), "-o", path("bad.pth"))
        XCTAssertEqual(empty.status, 2)
        XCTAssertEqual(empty.stderrLines, ["ckpt: \(path("empty.txt")): no label: expected one class name per line"])
    }

    func testInputChannelsAdaptTheFirstConvolution() throws {
        let weights = try Self.formula(try Self.specs("resnet18"))
        let source = try write(weights, to: "rgb.pth")
        let out = path("grey.pth")
        let r = try ckpt("transplant", source, "--into", "resnet18", "--in-channels", "1", "-o", out, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONValue.parse(r.stdout)
        XCTAssertEqual(j["adapted"]?.arrayValue?.first?["how"], .string("input channels 3 -> 1 (sum)"))
        let conv1 = try XCTUnwrap(j["verification"]?.arrayValue?.first)
        XCTAssertEqual(conv1["block"], .string("conv1"))
        XCTAssertEqual(conv1["passed"], .bool(true))
        XCTAssertNotEqual(conv1["max_abs_diff"], .null)
        let w = try XCTUnwrap(read(out).first { $0.path == "conv1.weight" }?.tensor)
        XCTAssertEqual(w.shape, [64, 1, 7, 7])
        let src = try XCTUnwrap(weights.first { $0.0 == "conv1.weight" }?.1).floats()
        let got = try w.floats()
        for f in [0, 17, 63] {
            for p in [0, 24, 48] {
                XCTAssertEqual(got[f * 49 + p], src[(f * 3) * 49 + p] + src[(f * 3 + 1) * 49 + p] + src[(f * 3 + 2) * 49 + p], accuracy: 1e-6)
            }
        }
    }

    func testCastsAreReportedWithTheirWorstRounding() throws {
        let weights = try Self.formula(try Self.specs("resnet18"))
        let source = try write(weights, to: "f32.pth")
        let out = path("f16.safetensors")
        let r = try ckpt("transplant", source, "--into", "resnet18", "--dtype", "float16", "-o", out, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONValue.parse(r.stdout)
        let casts = try XCTUnwrap(j["casts"]?.arrayValue)
        XCTAssertEqual(casts.count, weights.filter { $0.1.dtype == .float32 }.count)
        let written = try read(out)
        let w = try XCTUnwrap(written.first { $0.path == "layer1.0.conv1.weight" }?.tensor)
        XCTAssertEqual(w.dtype, .float16)
        let original = try XCTUnwrap(weights.first { $0.0 == "layer1.0.conv1.weight" }?.1).floats()
        let rounded = try w.floats()
        let worst = zip(original, rounded).map { Double(abs($0 - $1)) }.max() ?? 0
        let reported = casts.first { $0["key"] == .string("layer1.0.conv1.weight") }?["max_abs_error"]?.numberValue?.doubleValue
        XCTAssertEqual(try XCTUnwrap(reported), worst, accuracy: 1e-12)
        XCTAssertGreaterThan(worst, 0)
        XCTAssertEqual(written.first { $0.path == "bn1.num_batches_tracked" }?.tensor.dtype, .int64)
    }

    func testTemplateTargetWithAutoMaps() throws {
        let specs = try Self.specs("resnet18")
        let weights = try Self.formula(specs)
        let source = try write(weights, to: "resnet18.pth")
        // a user's own model: resnet18's parts renamed, a 5-class head
        func rename(_ k: String) -> String {
            if k.hasPrefix("conv1.") { return "stem.0." + k.dropFirst(6) }
            if k.hasPrefix("bn1.") { return "stem.1." + k.dropFirst(4) }
            if k.hasPrefix("fc.") { return "head." + k.dropFirst(3) }
            return k.replacingOccurrences(of: "layer", with: "stage")
        }
        let template = try write(try specs.map { s -> (String, Tensor) in
            var shape = s.shape
            if s.key.hasPrefix("fc.") { shape[0] = 5 }
            // the head (which the source cannot cover: 1000 classes against 5) holds the user's own values
            let t = s.dtype == "int64" ? try Tensor(dtype: .int64, shape: shape, bytes: [UInt8](repeating: 0, count: 8))
                : try Tensor(float32: [Float](repeating: s.key.hasPrefix("fc.") ? 0.25 : 0, count: shape.reduce(1, *)), shape: shape)
            return (rename(s.key), t)
        }, to: "mine.pth")
        let out = path("mine_from_resnet18.pth")
        let r = try ckpt("transplant", source, "--into", template, "--auto", "-o", out)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("  --map layer1=stage1    # confidence 1.00"), r.stdout)
        XCTAssertTrue(r.stdout.contains("  --map conv1=stem.0    # confidence 1.00"), r.stdout)
        let written = try read(out)
        XCTAssertEqual(written.map(\.path), specs.map { rename($0.key) })
        let given = Dictionary(uniqueKeysWithValues: weights)
        for s in specs where !s.key.hasPrefix("fc.") {
            XCTAssertEqual(try Self.bits(try XCTUnwrap(written.first { $0.path == rename(s.key) }?.tensor)),
                           try Self.bits(try XCTUnwrap(given[s.key])), s.key)
        }
        XCTAssertEqual(written.first { $0.path == "head.weight" }?.tensor.shape, [5, 512])
        // keys the source does not cover keep the template's values, as seed 001's
        // `model_dict.update(pretrained); model.load_state_dict(model_dict)` keeps the model's
        for key in ["head.weight", "head.bias"] {
            XCTAssertEqual(Set(try XCTUnwrap(written.first { $0.path == key }?.tensor).floats()), [0.25], key)
        }
        XCTAssertTrue(r.stdout.contains("the template's value"), r.stdout)
        // templates have no class count of their own to change
        let n = try ckpt("transplant", source, "--into", template, "--num-classes", "3", "-o", path("n.pth"))
        XCTAssertEqual(n.status, 2)
    }

    // MARK: gates and output handling

    func testARenameThatLeavesMostOfTheTargetUncoveredWarns() throws {
        let specs = try Self.specs("resnet18")
        let source = try write(try Self.formula(specs), to: "r18.pth")
        let typo = try ckpt("transplant", source, "--into", "resnet18", "--rename", "layer(\\d)=blk$1", "-o", path("typo.pth"))
        XCTAssertEqual(typo.status, 0, typo.stderr)
        XCTAssertTrue(typo.stderr.contains("ckpt: warning: only 4% of the target's bytes come from the source"), typo.stderr)
        let fine = try ckpt("transplant", source, "--into", "resnet18", "--num-classes", "5", "-o", path("fine.pth"))
        XCTAssertEqual(fine.status, 0, fine.stderr)
        XCTAssertFalse(fine.stderr.contains("warning"), fine.stderr)
    }

    func testGatesDryRunAndOverwriting() throws {
        var specs = try Self.specs("resnet18")
        specs[specs.count - 2].shape = [7, 512]
        specs[specs.count - 1].shape = [7]
        let source = try write(try Self.formula(specs), to: "seven.pth")
        // the class count comes from the weights: an exact transplant
        let exact = try ckpt("transplant", source, "--into", "resnet18", "--strict", "--require-coverage", "layer=100%", "-o", path("a.pth"))
        XCTAssertEqual(exact.status, 0, exact.stderr)
        XCTAssertTrue(exact.stdout.contains("target: resnet18 (7 classes)"), exact.stdout)
        // an explicit other count without asking for a new head elsewhere: gates refuse, nothing written
        let strict = try ckpt("transplant", source, "--into", "resnet18", "--num-classes", "7", "--in-channels", "1", "--in-channels-mode", "random", "--strict", "-o", path("b.pth"))
        XCTAssertEqual(strict.status, 0, strict.stderr)
        let gate = try ckpt("transplant", source, "--into", "resnet18", "--num-classes", "3", "--require-coverage", "fc=100%", "-o", path("c.pth"))
        XCTAssertEqual(gate.status, 1)
        XCTAssertEqual(gate.stderrLines, ["ckpt: \(source): --require-coverage fc=100%: fc is covered 0.0% (0 of 2 tensors)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("c.pth")))
        let dry = try ckpt("transplant", source, "--into", "resnet18", "--num-classes", "3", "--dry-run")
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.hasSuffix("dry run: nothing written (would write resnet18_from_seven.pth)\n"), dry.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: RunCkpt.root.appendingPathComponent("resnet18_from_seven.pth").path))
        // an existing output is kept unless --force
        let again = try ckpt("transplant", source, "--into", "resnet18", "-o", path("a.pth"))
        XCTAssertEqual(again.status, 2)
        XCTAssertEqual(again.stderrLines, ["ckpt: \(path("a.pth")) exists; pass --force to overwrite it"])
        XCTAssertEqual(try ckpt("transplant", source, "--into", "resnet18", "-o", path("a.pth"), "--force").status, 0)
        // --strict: a mismatched head nobody asked to replace
        let mismatch = try ckpt("transplant", source, "--into", "resnet18", "--num-classes", "3", "--map", "fc=fc", "--strict", "-o", path("d.pth"))
        XCTAssertEqual(mismatch.status, 0, mismatch.stderr)  // asked for by --num-classes
        let refused = try ckpt("transplant", source, "--into", "resnet34", "--strict", "-o", path("e.pth"))
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.hasPrefix("ckpt: \(source): --strict: "), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("e.pth")))
    }

    func testBadInputsAreOneLineAndLeaveNothing() throws {
        let source = try write(try Self.formula(try Self.specs("resnet18")), to: "r.pth")
        let noTensors = path("empty.pth")
        try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: [(.string("epoch"), .int(3))])), info: FormatInfo(format: .zip)), to: noTensors)
        let cases: [([String], String)] = [
            (["--into", "resnet18", "--map", "9:12=layer1"], "ckpt: --map 9:12=layer1: slice out of range: layer1 has tensors at indices 0…1"),
            (["--into", "resnet18", "--map", "layer1=stage9"], "ckpt: --map layer1=stage9: the target has no block 'stage9'; its blocks: conv1, bn1, layer1, layer2, layer3, layer4, fc"),
            (["--into", "resnet18", "--map", "layer1=layer2", "--map", "layer1.0=layer3"], "ckpt: overlapping maps: layer1=layer2 and layer1.0=layer3 take the same source layers"),
            (["--into", "resnet18", "--map", "layer1.4:9=layer2"], "ckpt: --map layer1.4:9=layer2: slice out of range: layer1 has tensors at indices 0…1"),
            (["--into", "resnet18", "--key", "optimizer"], "ckpt: \(source): no tensors under 'optimizer'"),
            (["--into", "resnet19"], "ckpt: unknown model 'resnet19'; did you mean 'resnet18'? the zoo has: vgg11, vgg13, vgg16, vgg19, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn, resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, resnext101_32x8d, wide_resnet50_2, alexnet, smallcnn, segnet, (or a path to a state-dict file)"),
            (["--into", "resnet18", "--rename", "([=x"], ""),
        ]
        for (args, expected) in cases {
            let r = try RunCkpt.run(["transplant", source] + args + ["-o", path("out.pth")])
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderrLines.count, 1, "\(args): \(r.stderr)")
            if !expected.isEmpty { XCTAssertEqual(r.stderrLines.first.map(String.init), expected, "\(args)") }
            XCTAssertEqual(r.stdout, "", "\(args)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.pth")), "\(args)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.pth.plan.json")), "\(args)")
        }
        let empty = try ckpt("transplant", noTensors, "--into", "resnet18", "-o", path("out.pth"))
        XCTAssertEqual(empty.status, 2)
        XCTAssertEqual(empty.stderrLines, ["ckpt: \(noTensors): no tensors"])
        // refusing to write over the source
        let over = try ckpt("transplant", source, "--into", "resnet18", "-o", source, "--force")
        XCTAssertEqual(over.status, 2)
        XCTAssertEqual(over.stderrLines.count, 1, over.stderr)
        XCTAssertEqual(try read(source).count, 122)
    }
}
