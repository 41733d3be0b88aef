import CkptFormat
import CkptKernels
import CkptSurgery
import CkptTensor
import CkptZoo
import Foundation
import XCTest
@testable import CkptTrain

/// The seed's question, as ckpt runs it: VGG-19 with FC1 and FC2 fine-tuned and a new 5-class
/// head, the head at a learning rate of its own (`--train classifier.0,classifier.3,classifier.6
/// --group-lr classifier.6=0.002 --lr 0.0002`), against torch doing the same steps
/// (fixtures/finetune/generate_vgg19.py): the epochs' losses and accuracies and the six trained
/// tensors within 1e-4 of their largest magnitude; the convolutions bit for bit as they started.
/// The 548 MB of weights are the training goldens' hash formula, rebuilt here.
final class VGG19FineTuneGoldenTests: XCTestCase {
    func testFC1FC2AndTheHeadEqualTorch() throws {
        let golden = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: FineTuneFixtures.root.appendingPathComponent("vgg19_fc.json"))) as? [String: Any])
        let specs = try Zoo.specification("vgg19", numClasses: 5).parameterSpecs
        let start = try TrainingGoldens.formulaStateDict(specs)
        let root = Value.dict(PyDict(items: start.map { (.string($0.key), .tensor($0.tensor)) }, kind: .orderedDict))
        let weights = KeyAnalysis.locateStateDict(Checkpoint(root: root, info: FormatInfo(format: .zip)))

        var o = FineTuneFixtures.options(.finetune, epochs: 2)
        o.imageSize = 32
        o.train = ["classifier.0", "classifier.3", "classifier.6"]
        o.learningRate = try XCTUnwrap(golden["lr"] as? Double)
        o.groupLearningRates = [("classifier.6", try XCTUnwrap(golden["head_lr"] as? Double))]
        let run = try FineTuning(model: "vgg19", numClasses: 5, weights: weights, data: FineTuneFixtures.data, options: o)
        XCTAssertEqual(run.cachedHeadBoundary, "classifier.0", "the convolutions run once per image")
        run.trainer.dropoutMask = { t in TrainingGoldens.dropoutMask(step: t) }
        let groups = try XCTUnwrap(run.trainer.optimizer).groups
        XCTAssertEqual(groups.map { $0.parameters.map(\.key) },
                       [["classifier.6.weight", "classifier.6.bias"],
                        ["classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"]])
        XCTAssertEqual(groups.map(\.learningRate), [0.002, 0.0002])

        let summary = try run.run()
        let metrics = try XCTUnwrap(golden["metrics"] as? [[String: Any]])
        for (m, t) in zip(summary.epochs, metrics) {
            let what = "epoch \(m.epoch)"
            let trainLoss = try XCTUnwrap(t["train_loss"] as? Double)
            XCTAssertEqual(m.trainLoss, trainLoss, accuracy: 1e-4 * max(1, trainLoss), "\(what): train loss")
            XCTAssertEqual(m.trainAccuracy, try XCTUnwrap(t["train_accuracy"] as? Double), "\(what): train accuracy")
            let valLoss = try XCTUnwrap(t["val_loss"] as? Double)
            XCTAssertEqual(try XCTUnwrap(m.validationLoss), valLoss, accuracy: 1e-4 * max(1, valLoss), "\(what): val loss")
            XCTAssertEqual(try XCTUnwrap(m.validationAccuracy), try XCTUnwrap(t["val_accuracy"] as? Double), "\(what): val accuracy")
            print("\(what): train loss \(m.trainLoss) (torch \(trainLoss)), val loss \(m.validationLoss ?? .nan) (torch \(valLoss))")
        }
        XCTAssertEqual(summary.epochs.count, metrics.count)

        let ours = try run.modelStateDict()
        let tensors = try XCTUnwrap(golden["tensors"] as? [String: Any])
        XCTAssertEqual(Set(tensors.keys), Set(run.trainableKeys))
        for (key, value) in tensors {
            let g = try TrainingGoldens.Summary(value)
            let t = try DenseTensor(shape: try XCTUnwrap(ours[key]).shape, values: try XCTUnwrap(ours[key]).floats())
            let worst = g.check(t, key)
            print("\(key): worst difference \(worst) of max |w|")
        }
        for (key, t) in start where !key.hasPrefix("classifier.") {
            XCTAssertEqual(try FineTuneFixtures.bits(try XCTUnwrap(ours[key])), try FineTuneFixtures.bits(t), "\(key) changed")
        }
    }
}
