import CkptFormat
import CkptKernels
import CkptSurgery
import CkptTensor
import CkptZoo
import Foundation
import XCTest
@testable import CkptTrain

/// Segmentation fine-tuning against torch (fixtures/finetune/generate_segnet.py): segnet with
/// 3 classes, hash-formula weights rebuilt here, its head (the last convolution and batch norm)
/// trained on an image and mask folder with void pixels (255) left out: per-epoch losses, pixel
/// accuracies and mean IoU, and the head's tensors within 1e-4 of their largest magnitude.
final class SegmentationFineTuneGoldenTests: XCTestCase {
    func testSegNetHeadOnAMaskFolderEqualsTorch() throws { try check("segnet_seg.json", pair: false) }

    /// x1 from images/, x2 from images2/ (`--inputs pair`): torch feeds the two files' tensors.
    func testSegNetWithTwoImageFoldersEqualsTorch() throws { try check("segnet_seg_pair.json", pair: true) }

    func check(_ goldenFile: String, pair: Bool) throws {
        let golden = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: FineTuneFixtures.root.appendingPathComponent(goldenFile))) as? [String: Any])
        // keys that share a parameter (segnet's repeated triples) hold the last key's values, as in torch
        let shared = try Zoo.make("segnet", numClasses: 3, initialize: false)
        try shared.load(stateDict: try TrainingGoldens.formulaStateDict(try Zoo.specification("segnet", numClasses: 3).parameterSpecs),
                        strictness: .strict)
        let start = try shared.stateDict()
        let root = Value.dict(PyDict(items: start.map { (.string($0.key), .tensor($0.tensor)) }, kind: .orderedDict))
        let weights = KeyAnalysis.locateStateDict(Checkpoint(root: root, info: FormatInfo(format: .zip)))
        var o = FineTuneFixtures.options(.featureExtract, epochs: try XCTUnwrap(golden["epochs"] as? Int))
        o.batchSize = try XCTUnwrap(golden["batch"] as? Int)
        o.imageSize = 64
        o.ignoreIndex = try XCTUnwrap(golden["ignore_index"] as? Int)
        if pair {
            o.inputPlanes = [0, 1]
            o.pairedInputs = true
        }
        let run = try FineTuning(model: "segnet", numClasses: 3, weights: weights,
                                 data: FineTuneFixtures.root.appendingPathComponent("shapes").path, options: o)
        XCTAssertEqual(run.task, .segmentation)
        XCTAssertEqual(run.trainableKeys, ["dec1.decode.4.weight", "dec1.decode.4.bias", "dec1.decode.5.weight", "dec1.decode.5.bias"])
        let summary = try run.run()
        let metrics = try XCTUnwrap(golden["metrics"] as? [[String: Any]])
        XCTAssertEqual(summary.epochs.count, metrics.count)
        for (m, t) in zip(summary.epochs, metrics) {
            let what = "epoch \(m.epoch)"
            for (ours, name) in [(m.trainLoss, "train_loss"), (m.validationLoss, "val_loss")] {
                let theirs = try XCTUnwrap(t[name] as? Double)
                XCTAssertEqual(try XCTUnwrap(ours), theirs, accuracy: 1e-4 * max(1, theirs), "\(what): \(name)")
            }
            XCTAssertEqual(m.trainAccuracy, try XCTUnwrap(t["train_accuracy"] as? Double), accuracy: 1e-12, "\(what): pixel accuracy")
            XCTAssertEqual(try XCTUnwrap(m.validationAccuracy), try XCTUnwrap(t["val_accuracy"] as? Double), accuracy: 1e-12, "\(what): val pixel accuracy")
            XCTAssertEqual(try XCTUnwrap(m.validationMeanIoU), try XCTUnwrap(t["val_miou"] as? Double), accuracy: 1e-9, "\(what): val mIoU")
            print("\(what): train loss \(m.trainLoss), val mIoU \(m.validationMeanIoU ?? .nan) (torch \(t["val_miou"] ?? ""))")
        }
        let ours = try run.modelStateDict()
        let tensors = try XCTUnwrap(golden["tensors"] as? [String: Any])
        XCTAssertEqual(tensors.count, 6, "weights, biases and the batch norm's running statistics")
        for (key, value) in tensors {
            let t = try XCTUnwrap(ours[key])
            let worst = try TrainingGoldens.Summary(value).check(try DenseTensor(shape: t.shape, values: t.floats()), key)
            print("\(key): worst difference \(worst) of max |x|")
        }
        for (key, t) in start where !key.hasPrefix("dec1.decode.4.") && !key.hasPrefix("dec1.decode.5.") && t.dtype == .float32 {
            XCTAssertEqual(try FineTuneFixtures.bits(try XCTUnwrap(ours[key])), try FineTuneFixtures.bits(t), "\(key) changed")
        }
    }
}
