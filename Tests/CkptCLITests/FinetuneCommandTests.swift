import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// `ckpt finetune` end to end on the built binary, on fixtures/finetune (the digits folder and a
/// smallcnn torch trained): what it writes loads with the zoo's keys, a new head is made for
/// another class count, resume continues exactly, a transplant's proof is re-run, and every bad
/// input is one line with a non-zero exit and nothing written.
final class FinetuneCommandTests: XCTestCase {
    var directory: URL!
    let fixtures = "fixtures/finetune/"
    var start: String { fixtures + "smallcnn_start.pth" }
    var digits: String { fixtures + "digits" }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-finetune-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func ckpt(_ args: [String]) throws -> CkptRun { try RunCkpt.run(args) }

    /// `finetune smallcnn` from the start weights on the digits with `extra`, writing `out`.
    func finetune(_ out: String, _ extra: [String], weights: String? = nil, numClasses: String = "5") throws -> CkptRun {
        try ckpt(["finetune", "smallcnn", "--weights", weights ?? start, "--data", digits, "--num-classes", numClasses, "-o", path(out)] + extra)
    }

    /// The files in the test's folder.
    func files() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    /// The tensors of `state` as raw bytes by key, in order.
    func tensors(_ value: Value?) throws -> [(String, [UInt8])] {
        let d = try XCTUnwrap(value?.dictValue)
        return try d.items.map { (try XCTUnwrap($0.key.stringValue), try XCTUnwrap($0.value.tensorValue).contiguousBytes()) }
    }

    func testWritesAStateDictWithTheZoosKeysATrainingCheckpointAndMetrics() throws {
        let r = try finetune("out.pth", ["--epochs", "2", "--batch", "8", "--lr", "0.01", "--mode", "feature-extract", "--no-augment", "--json",
                                         "--tensorboard", path("tb")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try files(), ["out.pth", "out.pth.classes.txt", "out.pth.curves.svg", "out.pth.metrics.csv", "out.pth.train.pth", "tb"])
        XCTAssertEqual(try String(contentsOfFile: path("out.pth.classes.txt"), encoding: .utf8), "5\n6\n7\n8\n9\n")
        let events = try FileManager.default.contentsOfDirectory(atPath: path("tb"))
        XCTAssertEqual(events.count, 1)
        XCTAssertTrue(events[0].hasPrefix("events.out.tfevents."), events[0])
        let svg = try String(contentsOfFile: path("out.pth.curves.svg"), encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<svg") || svg.hasPrefix("<?xml"), String(svg.prefix(80)))
        let out = try CheckpointReader.read(path: path("out.pth"))
        let keys = try XCTUnwrap(out.root.dictValue).items.compactMap(\.key.stringValue)
        let zoo = try TransplantCommandTests.specs("smallcnn").map(\.key)
        XCTAssertEqual(keys, zoo, "keys byte for byte the zoo's, in its order")
        XCTAssertTrue(out.info.isWeightsOnlyLoadable)
        // the frozen body is the start weights (float16) widened to float32, bit for bit
        let startRoot = try XCTUnwrap(try CheckpointReader.read(path: start).root.dictValue)
        let outRoot = try XCTUnwrap(out.root.dictValue)
        for key in keys where !key.hasPrefix("model.8.") {
            let ours = try XCTUnwrap(outRoot[key]?.tensorValue)
            XCTAssertEqual(ours.dtype, .float32)
            XCTAssertEqual(try ours.floats().map(\.bitPattern), try XCTUnwrap(startRoot[key]?.tensorValue).floats().map(\.bitPattern), key)
        }
        let train = try XCTUnwrap(try CheckpointReader.read(path: path("out.pth.train.pth")).root.dictValue)
        XCTAssertEqual(train.items.compactMap(\.key.stringValue), ["model", "optimizer", "scheduler", "epoch", "ckpt_finetune"])
        XCTAssertEqual(train["epoch"]?.intValue, 2)
        let csv = try String(contentsOfFile: path("out.pth.metrics.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.count, 3)
        XCTAssertEqual(csv.first, "epoch,stage,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate,images_per_second,seconds")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((json["metrics"] as? [Any])?.count, 2)
        XCTAssertNotNil(json["best_epoch"] as? Int)
        XCTAssertEqual(json["trainable"] as? [String], ["model.8.weight", "model.8.bias"])
        XCTAssertEqual(json["curves_svg"] as? String, path("out.pth.curves.svg"))
        XCTAssertEqual(json["classes_txt"] as? String, path("out.pth.classes.txt"))
        // predict names the classes from the list beside the weights
        let p = try ckpt(["predict", "smallcnn", "--weights", path("out.pth"), "--image", digits + "/val/7", "--top", "1", "--json"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let predicted = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(predicted["labels"] as? String, path("out.pth.classes.txt"))
        let labels = try XCTUnwrap(predicted["images"] as? [[String: Any]]).compactMap { ($0["predictions"] as? [[String: Any]])?.first?["label"] as? String }
        XCTAssertEqual(labels.count, 2)
        XCTAssertTrue(labels.allSatisfy { ["5", "6", "7", "8", "9"].contains($0) }, "\(labels)")
        XCTAssertEqual((json["tensorboard"] as? String).map { URL(fileURLWithPath: $0).deletingLastPathComponent().path }, path("tb"))
    }

    func testAnotherClassCountGetsANewHeadAndTheBodyStaysFrozen() throws {
        // three of the five digit folders: a 3-class problem for a 5-class checkpoint
        let data = path("three")
        for c in ["5", "6", "7"] {
            for split in ["train", "val"] {
                try FileManager.default.createDirectory(atPath: data + "/" + split, withIntermediateDirectories: true)
                try FileManager.default.createSymbolicLink(atPath: data + "/\(split)/\(c)",
                                                           withDestinationPath: RunCkpt.root.appendingPathComponent("\(digits)/\(split)/\(c)").path)
            }
        }
        let r = try ckpt(["finetune", "smallcnn", "--weights", start, "--data", data, "--num-classes", "3", "-o", path("three.pth"),
                          "--mode", "feature-extract", "--epochs", "1", "--batch", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("8 copied, 2 re-initialised (new head)"), r.stdout)
        let out = try XCTUnwrap(try CheckpointReader.read(path: path("three.pth")).root.dictValue)
        XCTAssertEqual(try XCTUnwrap(out["model.8.weight"]?.tensorValue).shape, [3, 64])
        let startRoot = try XCTUnwrap(try CheckpointReader.read(path: start).root.dictValue)
        for key in ["model.0.weight", "model.7.bias"] {
            let ours = try XCTUnwrap(out[key]?.tensorValue).floats()
            let theirs = try XCTUnwrap(startRoot[key]?.tensorValue).floats()
            XCTAssertEqual(ours.map(\.bitPattern), theirs.map(\.bitPattern), "\(key) must stay frozen")
        }
    }

    func testResumeContinuesAsAnUninterruptedRun() throws {
        let common = ["--batch", "8", "--lr", "0.01", "--seed", "3"]
        XCTAssertEqual(try finetune("whole.pth", common + ["--epochs", "3"]).status, 0)
        XCTAssertEqual(try finetune("part.pth", common + ["--epochs", "1"]).status, 0)
        let resumed = try finetune("part.pth", common + ["--epochs", "3", "--resume", path("part.pth.train.pth")])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resumed:"), resumed.stdout)
        let a = try CheckpointReader.read(path: path("whole.pth.train.pth")).root.dictValue
        let b = try CheckpointReader.read(path: path("part.pth.train.pth")).root.dictValue
        let wa = try tensors(a?["model"]), wb = try tensors(b?["model"])
        XCTAssertEqual(wa.map(\.0), wb.map(\.0))
        for (x, y) in zip(wa, wb) { XCTAssertEqual(x.1, y.1, "\(x.0) differs after resume") }
        let csv = try String(contentsOfFile: path("part.pth.metrics.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.dropFirst().map { $0.split(separator: ",").first.map(String.init) ?? "" }, ["1", "2", "3"])
    }

    func testATransplantsProofIsRunAgainAndAFailingOneRefusesToTrain() throws {
        XCTAssertEqual(try ckpt(["transplant", start, "--into", "smallcnn", "--num-classes", "5", "-o", path("tp.pth")]).status, 0)
        let ok = try finetune("a.pth", ["--epochs", "1"], weights: path("tp.pth"))
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("proof: \(path("tp.pth")).plan.json re-run: 1 block, max|Δ| 0"), ok.stdout)
        // other weights under the first transplant's plan: the proof fails, nothing is trained
        XCTAssertEqual(try ckpt(["transplant", "fixtures/demo/smallcnn_checkpoint.pth", "--into", "smallcnn", "--num-classes", "5",
                                 "-o", path("other.pth")]).status, 0)
        try FileManager.default.removeItem(atPath: path("other.pth.plan.json"))
        try FileManager.default.copyItem(atPath: path("tp.pth.plan.json"), toPath: path("other.pth.plan.json"))
        let bad = try finetune("b.pth", ["--epochs", "1"], weights: path("other.pth"))
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.stderrLines.count, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("the transplant's proof fails: block model"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("b.pth")))
        XCTAssertEqual(try finetune("c.pth", ["--epochs", "1", "--no-verify"], weights: path("other.pth")).status, 0)
    }

    func testANonFiniteLossStopsAndKeepsTheLastGoodEpoch() throws {
        let r = try finetune("nan.pth", ["--epochs", "8", "--lr", "0.07", "--batch", "4", "--no-augment", "--no-shuffle"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderrLines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("not finite"), r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("ckpt: epoch "), r.stderr)
        if r.stderr.contains("nothing written") {
            XCTAssertEqual(try files(), [])
        } else {
            let train = try CheckpointReader.read(path: path("nan.pth.train.pth")).root.dictValue
            let epoch = try XCTUnwrap(train?["epoch"]?.intValue)
            XCTAssertTrue(r.stderr.contains("nan.pth.train.pth epoch \(epoch)"), r.stderr)
            XCTAssertNotNil(try CheckpointReader.read(path: path("nan.pth")).root.dictValue?["model.8.bias"])
        }
    }

    func testBadInputIsOneLineANonZeroExitAndNothingWritten() throws {
        let cases: [([String], Int32, String)] = [
            (["--data", path("missing")], 2, "cannot list"),
            (["--num-classes", "4"], 2, "5 class folders (5, 6, 7, 8, 9), --num-classes is 4"),
            (["--num-classes", "1"], 64, "--num-classes: must be at least 2 (the cross-entropy of one class is 0 for every image: nothing would train), got 1"),
            (["--lr", "0"], 64, "--lr: must be positive and finite, got 0.0"),
            (["--lr=-1"], 64, "--lr: must be positive and finite, got -1.0"),
            (["--train", "model.8,modle.7"], 64, "--train: no module or parameter named 'modle.7'; did you mean model.7?"),
            (["--freeze", "layer4"], 64, "--freeze: no module or parameter named 'layer4'"),
            (["--mode", "feature-extract", "--train", "model.8"], 64, "--mode: feature-extract trains the new layers only"),
            (["--optimizer", "adam"], 64, "--optimizer: must be one of sgd, adamw, got 'adam'"),
            (["--mode", "two-stage", "--epochs", "1"], 64, "--stage1-epochs: must be at least 1 and fewer than --epochs (1), got 1"),
            (["--weights", "fixtures/finetune/expected.json"], 2, "expected.json"),
            (["--group-lr", "model.8"], 64, "--group-lr: expected NAME=LR, got 'model.8'"),
            (["--group-lr", "model.8=0"], 64, "--group-lr: model.8: the learning rate must be positive and finite, got 0.0"),
            (["--group-lr", "modle.8=0.1"], 64, "--group-lr: no module or parameter named 'modle.8'; did you mean model.8?"),
            (["--inputs", "split"], 64, "--inputs: smallcnn takes 1 input(s)"),
            (["--inputs", "pair"], 64, "--inputs: smallcnn takes 1 input(s); --inputs pair is for a model with two"),
            (["--inputs", "x,y"], 64, "--inputs: must be grey, split or pair, got 'x,y'"),
        ]
        for (args, status, message) in cases {
            var full = args
            var numClasses = "5"
            if let i = full.firstIndex(of: "--num-classes") {
                numClasses = full[i + 1]
                full.removeSubrange(i ... i + 1)
            }
            var r: CkptRun
            if let i = full.firstIndex(of: "--data") {
                let data = full[i + 1]
                full.removeSubrange(i ... i + 1)
                r = try ckpt(["finetune", "smallcnn", "--weights", start, "--data", data, "--num-classes", numClasses, "-o", path("out.pth")] + full)
            } else {
                r = try finetune("out.pth", full, numClasses: numClasses)
            }
            XCTAssertEqual(r.status, status, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderrLines.count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
            XCTAssertEqual(try files(), [], "\(args) wrote something")
        }
        let noFolder = try finetune("missing/out.pth", [])
        XCTAssertEqual(noFolder.status, 64)
        XCTAssertEqual(noFolder.stderrLines, ["ckpt: --output: the folder \(path("missing")) does not exist"])
        let wrongModel = try ckpt(["finetune", "resnet18", "--weights", start, "--data", digits, "--num-classes", "5", "-o", path("out.pth")])
        XCTAssertEqual(wrongModel.status, 2)
        XCTAssertEqual(wrongModel.stderrLines.count, 1, wrongModel.stderr)
        XCTAssertTrue(wrongModel.stderr.contains("the weights do not fit resnet18"), wrongModel.stderr)
        XCTAssertEqual(try files(), [])
    }
}

extension FinetuneCommandTests {
    func testFolderIssuesAreWarningsAndABadImageStopsUnlessSkipped() throws {
        let data = path("data")
        try FileManager.default.copyItem(atPath: RunCkpt.root.appendingPathComponent(digits).path, toPath: data)
        try Data().write(to: URL(fileURLWithPath: data + "/train/5/.DS_Store"))
        let png = try Data(contentsOf: URL(fileURLWithPath: data + "/train/6/0006.png"))
        try png.prefix(100).write(to: URL(fileURLWithPath: data + "/train/6/0000.png"))
        let args = ["finetune", "smallcnn", "--weights", start, "--data", data, "--num-classes", "5", "-o", path("out.pth"), "--epochs", "1"]
        let stopped = try ckpt(args)
        XCTAssertEqual(stopped.status, 2, stopped.stderr)
        XCTAssertEqual(stopped.stderrLines.map(String.init), [
            "ckpt: warning: \(data)/train/5/.DS_Store (train): hidden, left out (torchvision would index it)",
            "ckpt: \(data)/train/6/0000.png: truncated png: the data ends before the image does (libpng: unexpected end of file); nothing written (--skip-bad-images leaves unreadable images out)",
        ])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.pth")))
        let skipped = try ckpt(args + ["--skip-bad-images"])
        XCTAssertEqual(skipped.status, 0, skipped.stderr)
        XCTAssertEqual(skipped.stderrLines.count, 2, skipped.stderr)
        XCTAssertTrue(skipped.stderr.contains("ckpt: warning: skipped \(data)/train/6/0000.png: truncated png"), skipped.stderr)
        XCTAssertTrue(skipped.stdout.contains("21 training images"), skipped.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("out.pth")))
    }
}
