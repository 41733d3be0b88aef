import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// `ckpt predict` end to end on the built binary: the smallcnn torch fine-tuned on the shipped
/// digits (fixtures/finetune/expected.pth, key `finetune`), compared with torch's probabilities
/// (fixtures/predict/expected.json), the JSON shape, labels, folders, and every bad input as one
/// line with a non-zero exit.
final class PredictCommandTests: XCTestCase {
    var directory: URL!
    let trained = ["--weights", "fixtures/finetune/expected.pth", "--key", "finetune"]
    let digits = "fixtures/finetune/digits/val"

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-predict-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func predict(_ args: [String]) throws -> CkptRun { try RunCkpt.run(["predict", "smallcnn"] + args) }

    func json(_ r: CkptRun) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
    }

    /// torch's probabilities for the trained weights, by image path.
    func torchProbabilities() throws -> [String: [Double]] {
        let data = try Data(contentsOf: RunCkpt.root.appendingPathComponent("fixtures/predict/expected.json"))
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try XCTUnwrap(root["cases"] as? [[String: Any]])
        let c = try XCTUnwrap(cases.first { $0["weights"] as? String == "trained" })
        var out: [String: [Double]] = [:]
        for image in try XCTUnwrap(c["images"] as? [[String: Any]]) {
            out[try XCTUnwrap(image["path"] as? String)] = try XCTUnwrap(image["probabilities"] as? [Double])
        }
        return out
    }

    func testJSONHasTopKPerImageWithLabelsAndTorchsProbabilities() throws {
        try Data("five\nsix\n\nseven\neight\nnine\n".utf8).write(to: URL(fileURLWithPath: path("labels.txt")))
        let photo = "fixtures/data/images/photo_500x375.jpg"
        let r = try predict(trained + ["--image", digits, photo, "--labels", path("labels.txt"), "--top", "3", "--batch", "4", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "")
        let report = try json(r)
        XCTAssertEqual(report["model"] as? String, "smallcnn")
        XCTAssertEqual(report["num_classes"] as? Int, 5)
        XCTAssertEqual(report["image_size"] as? Int, 32)
        XCTAssertEqual(report["transform"] as? String, "Resize(37) CenterCrop(32) ToTensor Normalize(0.485,0.456,0.406; 0.229,0.224,0.225)")
        XCTAssertEqual(report["labels"] as? String, path("labels.txt"))
        XCTAssertEqual((report["skipped"] as? [Any])?.count, 0)
        let images = try XCTUnwrap(report["images"] as? [[String: Any]])
        let torch = try torchProbabilities()
        let expectedPaths = try FileManager.default.subpathsOfDirectory(atPath: RunCkpt.root.appendingPathComponent(digits).path)
            .filter { $0.hasSuffix(".png") }.sorted().map { digits + "/" + $0 } + [photo]
        XCTAssertEqual(images.compactMap { $0["image"] as? String }, expectedPaths, "a folder expands in path order, in place")
        let names = ["five", "six", "seven", "eight", "nine"]
        for image in images {
            let file = try XCTUnwrap(image["image"] as? String)
            let predictions = try XCTUnwrap(image["predictions"] as? [[String: Any]])
            XCTAssertEqual(predictions.count, 3)
            XCTAssertEqual(Set(predictions.flatMap(\.keys)), ["index", "label", "probability"])
            let p = try XCTUnwrap(torch[file])
            let order = p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }
            XCTAssertEqual(predictions.compactMap { $0["index"] as? Int }, Array(order.prefix(3)), file)
            for q in predictions {
                let i = try XCTUnwrap(q["index"] as? Int)
                XCTAssertEqual(q["label"] as? String, names[i])
                XCTAssertEqual(try XCTUnwrap(q["probability"] as? Double), p[i], accuracy: 1e-5, file)
            }
        }
    }

    func testOneLinePerImageWithTopKLabelsAndPercentages() throws {
        let r = try predict(trained + ["--image", digits + "/9", "--classes-from", "fixtures/finetune/digits"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2)
        let torch = try torchProbabilities()
        for (line, file) in zip(lines, ["0037.png", "0039.png"].map { digits + "/9/" + $0 }) {
            let p = try XCTUnwrap(torch[file])
            let order = p.indices.sorted { p[$0] > p[$1] }
            let expected = order.map { "\(["5", "6", "7", "8", "9"][$0]) (\(String(format: "%.1f%%", p[$0] * 100)))" }.joined(separator: ", ")
            XCTAssertEqual(line, "\(file): \(expected)")
        }
        // without labels the class index stands in; --top above the class count is capped
        let plain = try predict(trained + ["--image", digits + "/9/0039.png", "--top", "9", "--json"])
        let predictions = try XCTUnwrap((try json(plain)["images"] as? [[String: Any]])?.first?["predictions"] as? [[String: Any]])
        XCTAssertEqual(predictions.count, 5)
        XCTAssertTrue(predictions.allSatisfy { $0["label"] is NSNull })
    }

    func testBadInputIsOneLineAndANonZeroExit() throws {
        try Data("a\nb\nc\n".utf8).write(to: URL(fileURLWithPath: path("three.txt")))
        let good = digits + "/5/0033.png"
        let cases: [([String], Int32, String)] = [
            (trained + ["--image", good, "--labels", path("three.txt")], 2,
             "ckpt: \(path("three.txt")): 3 labels for a head of 5 classes; give one label per class, in class-index order"),
            (trained + ["--image", path("missing.png")], 2, "ckpt: \(path("missing.png")): cannot read: No such file or directory"),
            (trained + ["--image", good, path("missing.png")], 2, "ckpt: \(path("missing.png")): cannot read: No such file or directory"),
            (trained + ["--image", good, "--labels", path("none.txt")], 2, "ckpt: \(path("none.txt")): cannot read the labels: No such file or directory"),
            (trained + ["--image", good, "--num-classes", "3"], 2,
             "ckpt: the weights do not fit smallcnn: 3 classes asked for, the weights' head (model.8.weight) has 5"),
            (["--weights", "fixtures/finetune/expected.json", "--image", good], 2, "expected.json"),
            (trained + ["--image", good, "--top", "0"], 64, "--top must be at least 1, got 0"),
            (trained + [], 64, "--image: give at least one image file or folder"),
            (trained + ["--image", good, "--inputs", "pair"], 64, "--inputs: smallcnn takes one image per sample (one), got pair"),
            (trained + ["--image", good, "--image2", good], 64, "--image2: only for segnet with --inputs pair"),
            (trained + ["--image", good, "--output-mask", path("m.png")], 64, "--output-mask: smallcnn is a classifier"),
            (["--weights", "fixtures/demo/smallcnn_checkpoint.pth", "--image", good, "--labels", path("three.txt")], 2,
             "ckpt: \(path("three.txt")): 3 labels for a head of 10 classes"),
        ]
        for (args, status, message) in cases {
            let r = try predict(args)
            XCTAssertEqual(r.status, status, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderrLines.count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(args)")
        }
        let other = try RunCkpt.run(["predict", "resnet18", "--weights", "fixtures/finetune/smallcnn_start.pth", "--image", good])
        XCTAssertEqual(other.status, 2)
        XCTAssertEqual(other.stderrLines.count, 1, other.stderr)
        XCTAssertTrue(other.stderr.hasPrefix("ckpt: the weights do not fit resnet18: "), other.stderr)
    }

    func testATruncatedImageStopsNamingItUnlessSkipped() throws {
        let folder = path("images")
        try FileManager.default.createDirectory(atPath: folder + "/sub", withIntermediateDirectories: true)
        let png = try Data(contentsOf: RunCkpt.root.appendingPathComponent(digits + "/6/0058.png"))
        try png.write(to: URL(fileURLWithPath: folder + "/a.png"))
        try png.prefix(100).write(to: URL(fileURLWithPath: folder + "/sub/cut.png"))
        try png.write(to: URL(fileURLWithPath: folder + "/z.png"))
        try Data("notes".utf8).write(to: URL(fileURLWithPath: folder + "/README.md"))
        let stopped = try predict(trained + ["--image", folder])
        XCTAssertEqual(stopped.status, 2)
        XCTAssertEqual(stopped.stdout, "")
        XCTAssertEqual(stopped.stderrLines.map(String.init), [
            "ckpt: warning: \(folder)/README.md: not an image file, left out (as torchvision does)",
            "ckpt: \(folder)/sub/cut.png: truncated png: the data ends before the image does (libpng: unexpected end of file) (--skip-bad-images leaves unreadable images out)",
        ])
        let skipped = try predict(trained + ["--image", folder, "--skip-bad-images", "--json"])
        XCTAssertEqual(skipped.status, 0, skipped.stderr)
        XCTAssertEqual(skipped.stderrLines.count, 2, skipped.stderr)
        XCTAssertTrue(skipped.stderr.contains("ckpt: warning: skipped \(folder)/sub/cut.png: truncated png"), skipped.stderr)
        let report = try json(skipped)
        XCTAssertEqual((report["images"] as? [[String: Any]])?.compactMap { $0["image"] as? String }, [folder + "/a.png", folder + "/z.png"])
        XCTAssertEqual((report["skipped"] as? [[String: Any]])?.compactMap { $0["image"] as? String }, [folder + "/sub/cut.png"])
        let nothing = try predict(trained + ["--image", folder + "/sub", "--skip-bad-images"])
        XCTAssertEqual(nothing.status, 2)
        XCTAssertEqual(nothing.stdout, "")
        XCTAssertEqual(nothing.stderrLines.last.map(String.init), "ckpt: no sample could be read (1 sample left out); nothing to report")
    }
}

extension PredictCommandTests {
    /// segnet: two grey images, or one image's red and green planes (fixtures/predict/segnet_rg.png
    /// holds segnet_x1.png and segnet_x2.png as those planes), give the same class map, written as an
    /// 8-bit grey PNG of the centre crop; PredictorGoldenTests compares such maps with torch's.
    func testSegNetWritesTheSameMaskFromAPairAndFromASplitImage() throws {
        let weights = path("segnet.pth")
        XCTAssertEqual(try RunCkpt.run(["init", "segnet", "--num-classes", "3", "-o", weights]).status, 0)
        let common = ["predict", "segnet", "--weights", weights, "--image-size", "32"]
        let pair = try RunCkpt.run(common + ["--image", "fixtures/predict/segnet_x1.png", "--image2", "fixtures/predict/segnet_x2.png",
                                             "--output-mask", path("pair.png"), "--json"])
        XCTAssertEqual(pair.status, 0, pair.stderr)
        let image = try XCTUnwrap((try json(pair)["images"] as? [[String: Any]])?.first)
        XCTAssertEqual(image["image2"] as? String, "fixtures/predict/segnet_x2.png")
        XCTAssertEqual(image["mask"] as? String, path("pair.png"))
        XCTAssertEqual([image["width"] as? Int, image["height"] as? Int], [32, 32])
        let classes = try XCTUnwrap(image["classes"] as? [[String: Any]])
        XCTAssertEqual(classes.compactMap { $0["index"] as? Int }, [0, 1, 2])
        XCTAssertEqual(classes.compactMap { $0["pixels"] as? Int }.reduce(0, +), 1024)
        let png = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path("pair.png"))))
        XCTAssertEqual(Array(png[12 ..< 16]), Array("IHDR".utf8))
        XCTAssertEqual(Array(png[16 ..< 24]), [0, 0, 0, 32, 0, 0, 0, 32], "32 x 32")
        XCTAssertEqual(Array(png[24 ..< 26]), [8, 0], "8-bit grey")

        let split = try RunCkpt.run(common + ["--inputs", "split", "--image", "fixtures/predict/segnet_rg.png", "--output-mask", path("masks") + "/"])
        XCTAssertEqual(split.status, 0, split.stderr)
        XCTAssertTrue(split.stdout.hasPrefix("fixtures/predict/segnet_rg.png: 32x32 mask -> \(path("masks"))/segnet_rg.png: 0 "), split.stdout)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("masks/segnet_rg.png"))), Data(png))

        let again = try RunCkpt.run(common + ["--inputs", "split", "--image", "fixtures/predict/segnet_rg.png", "--output-mask", path("pair.png")])
        XCTAssertEqual(again.status, 64)
        XCTAssertEqual(again.stderrLines.map(String.init), ["ckpt: --output-mask: \(path("pair.png")) exists; pass --force to overwrite it"])
        let odd = try RunCkpt.run(common + ["--inputs", "split", "--image", "fixtures/predict/segnet_rg.png", "--image-size", "40"])
        XCTAssertEqual(odd.status, 64)
        XCTAssertTrue(odd.stderr.contains("--image-size: segnet halves the image five times: it must be a multiple of 32, got 40"), odd.stderr)
        let unpaired = try RunCkpt.run(common + ["--image", "fixtures/predict/segnet_x1.png"])
        XCTAssertEqual(unpaired.status, 64)
        XCTAssertEqual(unpaired.stderrLines.count, 1, unpaired.stderr)
    }
}
