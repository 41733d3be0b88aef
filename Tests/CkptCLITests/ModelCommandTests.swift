import CkptFormat
import CkptTensor
import Foundation
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// End-to-end tests of `ckpt zoo`, `summary`, `forward` and `bench forward` on the built binary:
/// exact parameter counts, outputs against torch's goldens (fixtures/zoo/outputs.json, weights
/// from the formula fixtures/zoo/generate_zoo.py documents), load failures and bad inputs.
final class ModelCommandTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    typealias Result = CkptRun

    /// Runs ckpt with `args` in the repository root.
    func ckpt(_ args: String...) throws -> Result {
        try RunCkpt.run(args)
    }

    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-model-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    // MARK: fixtures

    /// smallcnn's state-dict contract (`SmallCNN().state_dict()`), with `classes` outputs.
    static func smallCNNSpecs(classes: Int = 10) -> [(key: String, shape: [Int])] {
        [("model.0.weight", [32, 3, 5, 5]), ("model.0.bias", [32]),
         ("model.2.weight", [32, 32, 5, 5]), ("model.2.bias", [32]),
         ("model.4.weight", [64, 32, 5, 5]), ("model.4.bias", [64]),
         ("model.7.weight", [64, 1024]), ("model.7.bias", [64]),
         ("model.8.weight", [classes, 64]), ("model.8.bias", [classes])]
    }

    /// generate_zoo.py's weights: entry k, element i, from `s = sin(0.37·i + 0.11·k)`.
    static func formulaStateDict(_ specs: [(key: String, shape: [Int])]) throws -> [(String, Tensor)] {
        try specs.enumerated().map { k, spec in
            let n = spec.shape.reduce(1, *)
            let gain = 2 / Double(spec.shape.dropFirst().reduce(1, *)).squareRoot()
            let values = (0 ..< n).map { i -> Float in
                let s = sin(0.37 * Double(i) + 0.11 * Double(k))
                return Float(spec.shape.count >= 2 ? s * gain : (spec.key.hasSuffix("weight") ? 1 + 0.2 * s : 0.1 * s))
            }
            return (spec.key, try Tensor(float32: values, shape: spec.shape))
        }
    }

    /// generate_zoo.py's input argument `a`: element i is `sin(0.7·i + 0.3 + a)`.
    static func formulaInput(_ shape: [Int], argument a: Int = 0) throws -> Tensor {
        let n = shape.reduce(1, *)
        return try Tensor(float32: (0 ..< n).map { Float(sin(0.7 * Double($0) + 0.3 + Double(a))) }, shape: shape)
    }

    /// Writes `entries` as a flat dict (or nested under `nest`) to `name` in the temporary folder.
    @discardableResult
    func write(_ entries: [(String, Tensor)], to name: String, nest: String? = nil) throws -> String {
        var root = Value.dict(PyDict(items: entries.map { (.string($0.0), .tensor($0.1)) }, kind: .orderedDict))
        if let nest { root = .dict(PyDict(items: [(.string("epoch"), .int(3)), (.string(nest), root)])) }
        try CheckpointWriter.write(Checkpoint(root: root, info: FormatInfo(format: .zip)), to: path(name))
        return path(name)
    }

    /// The tensor `y` of an output file.
    func readOutput(_ path: String) throws -> (shape: [Int], values: [Float]) {
        let c = try CheckpointReader.read(path: path)
        XCTAssertEqual(c.tensors.map(\.path), ["y"])
        let y = try XCTUnwrap(c.tensors.first?.tensor)
        XCTAssertEqual(y.dtype, .float32)
        return (y.shape, try y.floats())
    }

    /// Torch's output of smallcnn on the formula weights and input (fixtures/zoo/outputs.json).
    func golden(layer: String? = nil) throws -> (shape: [Int], values: [Float], maxAbs: Double) {
        let data = try Data(contentsOf: Self.root.appendingPathComponent("fixtures/zoo/outputs.json"))
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let smallcnn = try XCTUnwrap((json["models"] as? [String: Any])?["smallcnn"] as? [String: Any])
        XCTAssertEqual(smallcnn["inputs"] as? [[Int]], [[2, 3, 32, 32]])
        let summary: [String: Any]
        if let layer {
            summary = try XCTUnwrap((smallcnn["layers"] as? [String: Any])?[layer] as? [String: Any])
        } else {
            summary = try XCTUnwrap(smallcnn["output"] as? [String: Any])
        }
        let values = try XCTUnwrap((summary["values"] ?? summary["first"]) as? [Double]).map { Float($0) }
        return (try XCTUnwrap(summary["shape"] as? [Int]), values, try XCTUnwrap(summary["max_abs"] as? Double))
    }

    /// Fails unless `max|Δ| ≤ 1e-4·max|y| + 1e-6` over the golden's stored values (the issue's bound).
    func assertClose(_ got: (shape: [Int], values: [Float]), _ expected: (shape: [Int], values: [Float], maxAbs: Double),
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.shape, expected.shape, file: file, line: line)
        XCTAssertGreaterThanOrEqual(got.values.count, expected.values.count, file: file, line: line)
        let worst = zip(got.values, expected.values).map { Double(abs($0 - $1)) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, 1e-4 * expected.maxAbs + 1e-6, "max|Δ| against torch", file: file, line: line)
    }

    // MARK: zoo and summary

    func testZooListsTheIssuesNineteenArchitectures() throws {
        let r = try ckpt("zoo", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let models = try XCTUnwrap(try JSONValue.parse(r.stdout).arrayValue)
        let names = models.compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(names, ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
                               "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                               "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "alexnet", "smallcnn", "segnet"])
        func parameters(_ name: String) -> Int? {
            models.first { $0["name"]?.stringValue == name }?["parameters"]?.numberValue?.intValue
        }
        // sum(p.numel() for p in torchvision.models.<name>().parameters())
        XCTAssertEqual(parameters("resnet18"), 11_689_512)
        XCTAssertEqual(parameters("resnet50"), 25_557_032)
        XCTAssertEqual(parameters("vgg16"), 138_357_544)
        XCTAssertEqual(parameters("alexnet"), 61_100_840)
        XCTAssertEqual(parameters("wide_resnet50_2"), 68_883_240)
        XCTAssertEqual(parameters("smallcnn"), 145_578)
        let smallcnn = try XCTUnwrap(models.first { $0["name"]?.stringValue == "smallcnn" })
        XCTAssertEqual(smallcnn["num_classes"], .int(10))
        XCTAssertEqual(smallcnn["input_shapes"], .array([.array([.int(3), .int(32), .int(32)])]))
        XCTAssertEqual(smallcnn["state_dict_entries"], .int(10))
    }

    func testSummaryOfSmallCNNHasExactCounts() throws {
        let r = try ckpt("summary", "smallcnn", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONValue.parse(r.stdout)
        // conv 3·32·25+32, 32·32·25+32, 32·64·25+64; linear 1024·64+64, 64·10+10
        XCTAssertEqual(j["total_parameters"], .int(145_578))
        XCTAssertEqual(j["trainable_parameters"], .int(145_578))
        XCTAssertEqual(j["non_trainable_parameters"], .int(0))
        XCTAssertEqual(j["parameter_bytes"], .int(4 * 145_578))
        XCTAssertEqual(j["input_bytes"], .int(4 * 3 * 32 * 32))
        // torchinfo's mult-adds (fixtures/zoo/summary.json): weights 32·32²·75 + 32·16²·800 + 64·8²·800
        // + 1024·64 + 64·10 = 12,354,176, plus each bias once per output pixel: 45,130
        XCTAssertEqual(j["mult_adds"], .int(12_399_306))
        let layers = try XCTUnwrap(j["layers"]?.arrayValue)
        func layer(_ name: String) -> JSONValue? { layers.first { $0["name"]?.stringValue == name } }
        let expected: [(String, Int, [Int])] = [
            ("model.0", 2432, [1, 32, 32, 32]), ("model.1", 0, [1, 32, 16, 16]), ("model.2", 25632, [1, 32, 16, 16]),
            ("model.4", 51264, [1, 64, 8, 8]), ("model.5", 0, [1, 64, 4, 4]), ("model.6", 0, [1, 1024]),
            ("model.7", 65600, [1, 64]), ("model.8", 650, [1, 10]),
        ]
        for (name, params, shape) in expected {
            XCTAssertEqual(layer(name)?["parameters"], .int(params), name)
            XCTAssertEqual(layer(name)?["output_shape"], .array(shape.map { .int($0) }), name)
        }
        // torchinfo order: the container before its children
        XCTAssertEqual(layers.first?["name"], .string("model"))
        XCTAssertEqual(layers.first?["index"], .int(1))

        let text = try ckpt("summary", "smallcnn", "--batch", "4")
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("│    └─Conv2d: 2-1      model.0  [4, 32, 32, 32]    2,432  True"), text.stdout)
        for line in ["Total params: 145,578", "Trainable params: 145,578", "Non-trainable params: 0", "Total mult-adds (M): 49.60",
                     "Input size (MB): 0.05", "Params size (MB): 0.56"] {
            XCTAssertTrue(text.stdout.contains(line + "\n"), line)
        }
    }

    func testSummaryOfSegNetSaysWhichLayersAreShared() throws {
        let r = try ckpt("summary", "segnet", "--input", "1x32x32,1x32x32")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("segnet (SegNet), 2 classes, input [1, 1, 32, 32], [1, 1, 32, 32]"), r.stdout)
        XCTAssertTrue(r.stdout.contains("Shared layers"))
        XCTAssertTrue(r.stdout.contains("  dec5.1 = dec5.4 = dec5.7 = dec5.10 (Conv2d, 2,359,808 params)\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("  dec4.decode.4 = dec4.decode.7 (Conv2d, 2,359,808 params)\n"))
        let repeatRow = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.contains(" dec5.4 ") })
        XCTAssertTrue(repeatRow.contains("(shared)"), String(repeatRow))

        let bad = try ckpt("summary", "segnet", "--input", "3x32x32")
        XCTAssertEqual(bad.status, 2)
        XCTAssertEqual(bad.stderrLines.count, 1, bad.stderr)
        XCTAssertEqual(try ckpt("summary", "segnet", "--input", "1x32x").status, 64)
    }

    // MARK: forward

    func testAMemoryLimitTooLowForOpenBLASIsOneLineNotAHang() throws {
        // OpenBLAS retries a failed allocation of its 128 MiB work buffer forever: ckpt checks
        // the address space first, and runs OpenBLAS without its own pool of threads (whose
        // threads allocated at load and, failing, kept `exit` waiting for them)
        let weights = try write(try Self.formulaStateDict(Self.smallCNNSpecs()), to: "weights.pth")
        let input = try write([("x", try Self.formulaInput([2, 3, 32, 32]))], to: "input.safetensors")
        let limit = "ulimit -v 200000"
        let expected = "ckpt: OpenBLAS needs 128 MiB of address space for its work buffer and cannot get it (is the virtual memory limit, ulimit -v, too low?)"
        let r = try RunCkpt.run(["forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("y.pth")], under: limit, seconds: 120)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderrLines, [Substring(expected)])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("y.pth")))
        let s = try RunCkpt.run(["summary", "smallcnn"], under: limit, seconds: 120)
        XCTAssertEqual(s.status, 2, s.stderr)
        XCTAssertEqual(s.stderrLines, [Substring(expected)])
        // commands that run no model never touch OpenBLAS, and exit under a tighter limit still
        let i = try RunCkpt.run(["inspect", "fixtures/valid/cnn.pth"], under: "ulimit -v 150000", seconds: 120)
        XCTAssertEqual(i.status, 0, i.stderr)
        // with room for the buffer the same forward runs
        let ok = try RunCkpt.run(["forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("y.pth")], under: "ulimit -v 600000", seconds: 300)
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    func testForwardOfSmallCNNMatchesTorch() throws {
        // nested like a training checkpoint and wrapped by DataParallel: located and unwrapped
        let weights = try write(try Self.formulaStateDict(Self.smallCNNSpecs()).map { ("module." + $0.0, $0.1) },
                                to: "weights.pth", nest: "state_dict")
        let input = try write([("x", try Self.formulaInput([2, 3, 32, 32]))], to: "input.safetensors")
        let r = try ckpt("forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("y.pth"), "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "")
        let j = try JSONValue.parse(r.stdout)
        XCTAssertEqual(j["state_dict_root"], .string("state_dict"))
        XCTAssertEqual(j["wrapper_prefix"], .string("module."))
        XCTAssertEqual(j["loaded"], .int(10))
        XCTAssertEqual(j["output_shape"], .array([.int(2), .int(10)]))
        assertClose(try readOutput(path("y.pth")), try golden())
    }

    func testForwardCapturesALayer() throws {
        let weights = try write(try Self.formulaStateDict(Self.smallCNNSpecs()), to: "weights.safetensors")
        let input = try write([("x", try Self.formulaInput([2, 3, 32, 32]))], to: "input.pth")
        let r = try ckpt("forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("flat.safetensors"), "--layer", "model.6")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("wrote \(path("flat.safetensors")) (safetensors): y [2, 1024], smallcnn layer model.6"), r.stdout)
        assertClose(try readOutput(path("flat.safetensors")), try golden(layer: "model.6"))

        let unknown = try ckpt("forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("no.pth"), "--layer", "model.9")
        XCTAssertEqual(unknown.status, 2)
        XCTAssertEqual(unknown.stderrLines.count, 1, unknown.stderr)
        XCTAssertTrue(unknown.stderr.hasPrefix("ckpt: no layer named 'model.9'; layers include model, model.0, model.1"), unknown.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("no.pth")))
    }

    func testStrictLoadNamesKeysAndBothShapes() throws {
        var sd = try Self.formulaStateDict(Self.smallCNNSpecs())
        sd[0] = ("model.0.weight", try Tensor(float32: [Float](repeating: 0.1, count: 32 * 25), shape: [32, 1, 5, 5]))
        sd.removeLast()
        sd.append(("head.weight", try Tensor(float32: [1, 2], shape: [2])))
        let weights = try write(sd, to: "bad.pth")
        let input = try write([("x", try Self.formulaInput([1, 3, 32, 32]))], to: "input.pth")
        let r = try ckpt("forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("y.pth"))
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderrLines, [
            "ckpt: \(weights) does not fit smallcnn: 1 shape mismatch: model.0.weight model [32, 3, 5, 5] checkpoint [32, 1, 5, 5]",
            "ckpt: \(weights) does not fit smallcnn: 1 missing key: model.8.bias",
            "ckpt: \(weights) does not fit smallcnn: 1 unexpected key: head.weight [2]",
        ])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("y.pth")))

        let lenient = try ckpt("forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("y.pth"), "--non-strict")
        XCTAssertEqual(lenient.status, 0, lenient.stderr)
        XCTAssertEqual(lenient.stderrLines.count, 4, lenient.stderr)
        XCTAssertTrue(lenient.stderrLines.allSatisfy { $0.hasPrefix("ckpt: warning: ") })
        // a module is loaded whole or not at all: model.8's weight is not put beside a missing bias
        XCTAssertTrue(lenient.stderrLines[3].contains("2 tensors of modules that do not fit whole not loaded: model.0.bias (module model.0 re-initialised whole: weight has shape [32, 1, 5, 5] in the source (model.0.weight), [32, 3, 5, 5] in the target), model.8.weight (module model.8 re-initialised whole: bias is missing from the source)"), lenient.stderr)
        XCTAssertEqual(try readOutput(path("y.pth")).shape, [1, 10])
    }

    func testClassCountIsReadFromTheWeights() throws {
        let weights = try write(try Self.formulaStateDict(Self.smallCNNSpecs(classes: 7)), to: "seven.pth")
        let input = try write([("x", try Self.formulaInput([3, 3, 32, 32]))], to: "input.pth")
        let r = try ckpt("forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("y.pth"), "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try JSONValue.parse(r.stdout)["num_classes"], .int(7))
        XCTAssertEqual(try readOutput(path("y.pth")).shape, [3, 7])
        // an explicit count that disagrees is a strict-load failure naming both shapes
        let forced = try ckpt("forward", "smallcnn", "--num-classes", "10", "--weights", weights, "--input", input, "-o", path("z.pth"))
        XCTAssertEqual(forced.status, 2)
        XCTAssertTrue(forced.stderr.contains("model.8.weight model [10, 64] checkpoint [7, 64]"), forced.stderr)
    }

    func testBadInputsGetOneLineAndExitTwo() throws {
        let weights = try write(try Self.formulaStateDict(Self.smallCNNSpecs()), to: "weights.pth")
        var values = try Self.formulaInput([1, 3, 32, 32]).floats()
        values[5] = .nan
        let cases: [(String, Tensor, String)] = [
            ("nan.pth", try Tensor(float32: values, shape: [1, 3, 32, 32]), "ckpt: input x holds a non-finite value at element 5"),
            ("gray.pth", try Self.formulaInput([1, 1, 32, 32]), "ckpt: input x has shape [1, 1, 32, 32], expected [N, 3, H, W] (smallcnn takes 3 channels)"),
            ("flat.pth", try Self.formulaInput([3, 32, 32]), "ckpt: input x has shape [3, 32, 32], expected [N, C, H, W]"),
            ("large.pth", try Self.formulaInput([1, 3, 64, 64]), "ckpt: model.7 (Linear): linear: input has shape [1, 4096], expected [N, 1024]"),
        ]
        for (name, tensor, message) in cases {
            let input = try write([("x", tensor)], to: name)
            let r = try ckpt("forward", "smallcnn", "--weights", weights, "--input", input, "-o", path("y.pth"))
            XCTAssertEqual(r.status, 2, name)
            XCTAssertEqual(r.stderr, message + "\n", name)
        }
        let unknown = try ckpt("forward", "resnet19", "--weights", weights, "--input", path("nan.pth"), "-o", path("y.pth"))
        XCTAssertEqual(unknown.status, 2)
        XCTAssertEqual(unknown.stderrLines.count, 1)
        XCTAssertTrue(unknown.stderr.hasPrefix("ckpt: unknown model 'resnet19'; did you mean 'resnet18'? the zoo has: vgg11, vgg13,"), unknown.stderr)
        XCTAssertTrue(unknown.stderr.contains("resnet18, resnet34"))
        XCTAssertEqual(try ckpt("forward", "smallcnn", "--num-classes", "0", "--weights", weights, "--input", path("nan.pth"), "-o", path("y.pth")).status, 64)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("y.pth")))
    }

    // MARK: bench

    func testBenchForwardPrintsTimings() throws {
        let r = try ckpt("bench", "forward", "resnet18", "--batch", "1", "--size", "64", "--iterations", "2", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONValue.parse(r.stdout)
        let ms = try XCTUnwrap(j["ms_per_batch"]?.numberValue?.doubleValue)
        let median = try XCTUnwrap(j["median_ms_per_batch"]?.numberValue?.doubleValue)
        let rate = try XCTUnwrap(j["images_per_second"]?.numberValue?.doubleValue)
        XCTAssertGreaterThan(ms, 0)
        XCTAssertGreaterThanOrEqual(median, ms)
        XCTAssertEqual(rate, 1000 / ms, accuracy: 1e-6 * rate)
        XCTAssertGreaterThan(try XCTUnwrap(j["gflop_per_second"]?.numberValue?.doubleValue), 0)
        XCTAssertEqual(j["input_shapes"], .array([.array([.int(1), .int(3), .int(64), .int(64)])]))
        // resnet18's mult-adds scale with the plane: 1.81 G at 224², so about 0.15 G at 64²
        XCTAssertEqual(Double(try XCTUnwrap(j["mult_adds"]?.numberValue?.intValue)) / 1e9, 0.149, accuracy: 0.01)
    }

    func testBenchTrainPrintsAStepOfEveryKind() throws {
        let r = try ckpt("bench", "train", "smallcnn", "--batch", "4", "--iterations", "1", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONValue.parse(r.stdout)
        let ms = try XCTUnwrap(j["ms_per_step"]?.numberValue?.doubleValue)
        XCTAssertGreaterThan(ms, 0)
        XCTAssertEqual(try XCTUnwrap(j["images_per_second"]?.numberValue?.doubleValue), 4000 / ms, accuracy: 1e-6 * 4000 / ms)
        XCTAssertEqual(j["trainable_tensors"], .int(10))
        let loss = try XCTUnwrap(j["loss"]?.numberValue?.doubleValue)
        XCTAssertTrue(loss.isFinite && loss > 0)
        let head = try ckpt("bench", "train", "resnet18", "--batch", "2", "--size", "32", "--iterations", "1", "--train", "fc",
                            "--optimizer", "adamw", "--json")
        XCTAssertEqual(head.status, 0, head.stderr)
        XCTAssertEqual(try JSONValue.parse(head.stdout)["trainable_tensors"], .int(2))
    }

    func testBenchTrainRefusesBadInputInOneLine() throws {
        let unknown = try ckpt("bench", "train", "resnet18", "--batch", "2", "--size", "32", "--train", "layer")
        XCTAssertEqual(unknown.status, 2)
        XCTAssertEqual(unknown.stderrLines, ["ckpt: --train: no module or parameter named 'layer'; did you mean layer1, layer2, layer3, layer4?"])
        let typo = try ckpt("bench", "train", "resnet18", "--batch", "2", "--size", "32", "--train", "fc.wieght")
        XCTAssertEqual(typo.stderrLines, ["ckpt: --train: no module or parameter named 'fc.wieght'; did you mean fc.weight?"])
        let one = try ckpt("bench", "train", "resnet18", "--batch", "1", "--size", "32")
        XCTAssertEqual(one.status, 2)
        XCTAssertEqual(one.stderrLines.count, 1, one.stderr)
        XCTAssertTrue(one.stderr.contains("expected more than 1 value per channel when training"), one.stderr)
        XCTAssertTrue(one.stderr.contains("torch refuses it too"), one.stderr)
        for lr in ["0", "-0.1", "nan"] {
            // "--lr=-0.1": a negative value given apart reads as an option to ArgumentParser
            let bad = try ckpt("bench", "train", "smallcnn", "--batch", "2", "--lr=\(lr)")
            XCTAssertEqual(bad.status, 2, lr)
            XCTAssertEqual(bad.stderrLines.count, 1, bad.stderr)
            XCTAssertTrue(bad.stderr.contains("learning rate"), bad.stderr)
        }
        let diverging = try ckpt("bench", "train", "smallcnn", "--batch", "2", "--lr", "1e30", "--iterations", "2")
        XCTAssertEqual(diverging.status, 2)
        XCTAssertEqual(diverging.stderrLines.count, 1, diverging.stderr)
        XCTAssertTrue(diverging.stderr.contains("not finite"), diverging.stderr)
    }
}
