import CkptData
import CkptFormat
import CkptSurgery
import CkptTensor
import CkptZoo
import Foundation
import XCTest
@testable import CkptTrain

/// `Predictor` against fixtures/predict/expected.json (fixtures/predict/generate.py: torchvision's
/// eval transform, `model.eval()` and `torch.softmax` on shipped smallcnn weights and images; a
/// segnet's per-pixel argmax on formula weights).
final class PredictorGoldenTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func expected() throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent("fixtures/predict/expected.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The weights a golden case names, located as the CLI locates them.
    static func weights(_ name: String) throws -> LocatedStateDict {
        switch name {
        case "start":
            return KeyAnalysis.locateStateDict(try CheckpointReader.read(path: path("fixtures/finetune/smallcnn_start.pth")))
        default:
            let checkpoint = try CheckpointReader.read(path: path("fixtures/finetune/expected.pth"))
            return try XCTUnwrap(KeyAnalysis.locateStateDict(checkpoint, at: "finetune"))
        }
    }

    /// Probabilities within 1e-5 of torch's and the same class order, for every image of every
    /// case, in batches of 4 (so the last batch is partial).
    func testProbabilitiesAndOrderEqualTorch() throws {
        let cases = try XCTUnwrap(Self.expected()["cases"] as? [[String: Any]])
        var worst = 0.0
        for c in cases {
            let name = try XCTUnwrap(c["weights"] as? String)
            let fitted = try FittedModel.exact(model: "smallcnn", weights: try Self.weights(name))
            XCTAssertEqual(fitted.numClasses, 5, "the class count comes from the head")
            let predictor = try Predictor(fitted, options: PredictionOptions(batchSize: 4))
            XCTAssertEqual(predictor.transform, .eval(size: 32, channels: 3))
            let images = try XCTUnwrap(c["images"] as? [[String: Any]])
            let paths = try images.map { Self.path(try XCTUnwrap($0["path"] as? String)) }
            let (predictions, skipped) = try predictor.classify(paths.map { [$0] })
            XCTAssertEqual(skipped, [])
            XCTAssertEqual(predictions.map(\.files), paths.map { [$0] })
            XCTAssertEqual(predictions.map(\.sample), Array(paths.indices))
            for (p, image) in zip(predictions, images) {
                let torch = try XCTUnwrap(image["probabilities"] as? [Double])
                let order = try XCTUnwrap(image["order"] as? [Int])
                XCTAssertEqual(p.probabilities.count, torch.count)
                for (mine, theirs) in zip(p.probabilities, torch) {
                    worst = max(worst, abs(Double(mine) - theirs))
                    XCTAssertEqual(Double(mine), theirs, accuracy: 1e-5, "\(name) \(p.files[0])")
                }
                XCTAssertEqual(p.top(5).map(\.index), order, "\(name) \(p.files[0]): top-5 order")
                XCTAssertEqual(p.top(2).map(\.index), Array(order.prefix(2)))
                XCTAssertEqual(Double(p.probabilities.reduce(0, +)), 1, accuracy: 1e-6)
            }
        }
        print("predictor: largest |p - torch| over \(cases.count) cases: \(worst)")
        XCTAssertLessThan(worst, 1e-5)
    }

    /// A batch size that divides nothing gives the numbers of one large batch, within float32
    /// rounding (the kernels block their sums by batch size).
    func testBatchingDoesNotChangeTheNumbers() throws {
        let fitted = try FittedModel.exact(model: "smallcnn", weights: try Self.weights("trained"))
        let digits = try ImageFileList.folder(Self.path("fixtures/finetune/digits/val")).paths.map { [$0] }
        let one = try Predictor(fitted, options: PredictionOptions(batchSize: 1)).classify(digits).predictions
        let all = try Predictor(fitted, options: PredictionOptions(batchSize: 64)).classify(digits).predictions
        XCTAssertEqual(one.map(\.sample), all.map(\.sample))
        for (a, b) in zip(one, all) {
            for (x, y) in zip(a.probabilities, b.probabilities) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        }
    }

    func testTopKeepsTheLowerIndexFirstOnTies() {
        let p = ImagePrediction(sample: 0, files: ["x"], probabilities: [0.1, 0.3, 0.3, 0.2, 0.1])
        XCTAssertEqual(p.top(5).map(\.index), [1, 2, 3, 0, 4])
        XCTAssertEqual(p.top(2), [ClassProbability(index: 1, probability: 0.3), ClassProbability(index: 2, probability: 0.3)])
        XCTAssertEqual(p.top(9).count, 5)
    }

    /// An unreadable image stops the call with its error, or is left out with `.skip` while the
    /// others keep their numbers.
    func testABadImageStopsOrIsSkipped() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-predictor-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = Self.path("fixtures/finetune/digits/val/5/0033.png")
        let bad = dir.appendingPathComponent("cut.png").path
        try Data(try Data(contentsOf: URL(fileURLWithPath: good)).prefix(60)).write(to: URL(fileURLWithPath: bad))
        let fitted = try FittedModel.exact(model: "smallcnn", weights: try Self.weights("trained"))
        XCTAssertThrowsError(try Predictor(fitted).classify([[good], [bad]])) { e in
            XCTAssertEqual((e as? DataError)?.file, bad)
            XCTAssertEqual((e as? DataError)?.kind, .truncated)
        }
        let (kept, skipped) = try Predictor(fitted, options: PredictionOptions(badImages: .skip)).classify([[good], [bad], [good]])
        XCTAssertEqual(kept.map(\.sample), [0, 2])
        XCTAssertEqual(skipped.map(\.sampleIndex), [1])
        XCTAssertEqual(skipped.first?.path, bad)
        let alone = try Predictor(fitted).classify([[good]]).predictions[0].probabilities
        for (x, y) in zip(kept[0].probabilities, alone) { XCTAssertEqual(x, y, accuracy: 1e-6) }
    }

    /// Weights of another model, or a class count the head contradicts, are refused by name.
    func testExactFitRefusesWeightsThatDoNotFit() throws {
        XCTAssertThrowsError(try FittedModel.exact(model: "resnet18", weights: try Self.weights("start"))) { e in
            guard case let .weightsDoNotFit(model, problems)? = e as? TrainingError else { return XCTFail("\(e)") }
            XCTAssertEqual(model, "resnet18")
            XCTAssertFalse(problems.isEmpty)
        }
        XCTAssertThrowsError(try FittedModel.exact(model: "smallcnn", numClasses: 3, weights: try Self.weights("start"))) { e in
            XCTAssertEqual((e as? TrainingError)?.description,
                           "the weights do not fit smallcnn: 3 classes asked for, the weights' head (model.8.weight) has 5")
        }
        let fitted = try FittedModel.exact(model: "smallcnn", numClasses: 5, weights: try Self.weights("start"))
        XCTAssertEqual(fitted.reinitializedKeys, [])
        XCTAssertFalse(fitted.model.isTraining)
        let predictor = try Predictor(fitted)
        XCTAssertThrowsError(try predictor.check(labels: ["a", "b"], source: "l.txt")) { e in
            XCTAssertEqual((e as? TrainingError)?.description,
                           "l.txt: 2 labels for a head of 5 classes; give one label per class, in class-index order")
        }
        XCTAssertNoThrow(try predictor.check(labels: ["5", "6", "7", "8", "9"], source: "l.txt"))
        XCTAssertThrowsError(try Predictor(fitted, options: PredictionOptions(inputForm: .pair)))
    }

    /// segnet's per-pixel argmax equals torch's wherever torch's best class leads by more than
    /// rounding, for two grey images and for one image split into its red and green planes.
    func testSegNetMasksEqualTorch() throws {
        let golden = try XCTUnwrap(Self.expected()["segnet"] as? [String: Any])
        let specs = try Zoo.specification("segnet", numClasses: 3).parameterSpecs
        let state = try TrainingGoldens.formulaStateDict(specs)
        let fitted = try FittedModel.exact(model: "segnet", weights: LocatedStateDict(rootPath: "", wrapperPrefix: nil, raw: state))
        XCTAssertEqual(fitted.numClasses, 3)
        let samples: [(InputForm, [String])] = [
            (.pair, [Self.path("fixtures/predict/segnet_x1.png"), Self.path("fixtures/predict/segnet_x2.png")]),
            (.split, [Self.path("fixtures/predict/segnet_rg.png")]),
        ]
        for (form, files) in samples {
            let predictor = try Predictor(fitted, options: PredictionOptions(imageSize: 32, inputForm: form))
            XCTAssertTrue(predictor.isSegmentation)
            var masks: [MaskPrediction] = []
            try predictor.segment([files]) { masks += $0.predictions }
            let mask = try XCTUnwrap(masks.first)
            XCTAssertEqual([mask.mask.width, mask.mask.height], [32, 32])
            let g = try XCTUnwrap(golden[form.rawValue] as? [String: Any])
            let torchMask = try XCTUnwrap(g["mask"] as? [Int])
            let margin = try XCTUnwrap(g["margin"] as? [Double])
            var compared = 0
            for i in 0 ..< torchMask.count where margin[i] > 1e-4 || margin[i] == 0 {
                XCTAssertEqual(Int(mask.mask.labels[i]), torchMask[i], "\(form) pixel \(i) (torch margin \(margin[i]))")
                compared += 1
            }
            XCTAssertGreaterThan(compared, 1000)
            XCTAssertEqual(mask.pixelsPerClass.reduce(0, +), 1024)
        }
        XCTAssertThrowsError(try Predictor(fitted, options: PredictionOptions(imageSize: 40))) { e in
            XCTAssertTrue("\(e)".contains("multiple of 32"), "\(e)")
        }
    }
}
