import CkptData
import CkptFormat
import CkptSurgery
import CkptTensor
import CkptZoo
import Foundation
import XCTest
@testable import CkptTrain

/// A few epochs of fine-tuning on the digits folder, without augmentation and in ImageFolder
/// order, against torch doing the same steps (fixtures/finetune/generate.py): the final weights
/// within 1e-4 of each tensor's largest magnitude, the per-epoch losses, accuracies and learning
/// rates, and the frozen tensors bit for bit as they started.
final class FineTuningGoldenTests: XCTestCase {
    /// Runs `options`, compares the weights with torch's `caseName` and the metrics epoch by epoch.
    private func check(_ caseName: String, _ options: FineTuneOptions) throws -> (FineTuning, FineTuneSummary) {
        let run = try FineTuneFixtures.run(options)
        let summary = try run.run()
        let ours = try run.modelStateDict()
        XCTAssertEqual(ours.keys, try FineTuneFixtures.startWeights().stateDict.keys, "zoo keys in torch's order")
        let (worst, key) = try FineTuneFixtures.assertClose(ours, try FineTuneFixtures.expected(caseName), caseName)
        print("\(caseName): worst weight difference \(worst) of max |w| (\(key))")

        let torch = try FineTuneFixtures.metrics(caseName)
        XCTAssertEqual(summary.epochs.count, torch.count)
        for (m, t) in zip(summary.epochs, torch) {
            let what = "\(caseName) epoch \(m.epoch)"
            XCTAssertEqual(m.learningRate, try XCTUnwrap(t["learning_rate"] as? Double), "\(what): learning rate")
            let trainLoss = try XCTUnwrap(t["train_loss"] as? Double)
            XCTAssertEqual(m.trainLoss, trainLoss, accuracy: 1e-4 * max(1, trainLoss), "\(what): train loss")
            XCTAssertEqual(m.trainAccuracy, try XCTUnwrap(t["train_accuracy"] as? Double), "\(what): train accuracy")
            // validation runs the eval transform (32 -> 37 bilinear, centre crop 32) on the val folder
            let valLoss = try XCTUnwrap(t["val_loss"] as? Double)
            XCTAssertEqual(try XCTUnwrap(m.validationLoss), valLoss, accuracy: 1e-4 * max(1, valLoss), "\(what): val loss")
            XCTAssertEqual(try XCTUnwrap(m.validationAccuracy), try XCTUnwrap(t["val_accuracy"] as? Double), "\(what): val accuracy")
            XCTAssertEqual(m.images, 20)
            print("\(what): train loss \(m.trainLoss) (torch \(trainLoss)), val loss \(m.validationLoss ?? .nan) (torch \(valLoss))")
        }
        return (run, summary)
    }

    /// Every parameter trains; SGD with momentum and weight decay, cosine annealing per epoch.
    func testFinetuneModeEqualsTorch() throws {
        var o = FineTuneFixtures.options(.finetune, epochs: 2)
        o.schedule = .cosine
        let (run, summary) = try check("finetune", o)
        XCTAssertEqual(run.trainableKeys.count, 10)
        XCTAssertEqual(summary.steps, 6, "3 batches (8, 8, 4) per epoch")
    }

    /// Only the head trains; everything else stays bit for bit the starting weights.
    func testFeatureExtractModeEqualsTorchAndFreezesTheBody() throws {
        let (run, _) = try check("feature_extract", FineTuneFixtures.options(.featureExtract, epochs: 2))
        XCTAssertEqual(run.trainableKeys, ["model.8.weight", "model.8.bias"])
        let start = try FineTuneFixtures.startWeights().stateDict
        let ours = try run.modelStateDict()
        for (key, t) in start where !key.hasPrefix("model.8.") {
            XCTAssertEqual(try FineTuneFixtures.bits(try XCTUnwrap(ours[key])), try FineTuneFixtures.bits(t), "\(key) changed")
        }
    }

    /// The head for one epoch, then everything at a tenth of the rate with a new optimizer.
    func testTwoStageModeEqualsTorch() throws {
        var o = FineTuneFixtures.options(.twoStage, epochs: 3)
        o.stage1Epochs = 1
        let (run, summary) = try check("two_stage", o)
        XCTAssertEqual(summary.epochs.map(\.stage), [1, 2, 2])
        XCTAssertEqual(run.trainableKeys.count, 10)
    }

    /// The head with AdamW under a warm-up then step decay (`SequentialLR` of `LinearLR` and `StepLR`).
    func testFeatureExtractWithAdamWAndWarmupEqualsTorch() throws {
        var o = FineTuneFixtures.options(.featureExtract, epochs: 3)
        o.optimizer = .adamw
        o.weightDecay = 0.01
        o.schedule = .step
        o.stepSize = 1
        o.gamma = 0.5
        o.warmupEpochs = 1
        let (_, summary) = try check("feature_extract_adamw", o)
        XCTAssertEqual(summary.epochs.map(\.learningRate), [0.001, 0.01, 0.005])
    }

    /// Stopped after epoch 1 (checkpoint written and read back by CkptFormat), resumed in a new
    /// run: the same weights, bit for bit, as the uninterrupted run, across a stage change, with
    /// shuffling, augmentation, a warm-up and cosine annealing.
    func testResumeGivesTheUninterruptedRunsWeights() throws {
        var o = FineTuneFixtures.options(.twoStage, epochs: 3)
        o.shuffle = true
        o.augment = true
        o.schedule = .cosine
        o.warmupEpochs = 1
        o.seed = 7
        let whole = try FineTuneFixtures.run(o)
        var saved: Value?
        try whole.run(onEpoch: { outcome in
            if outcome.metrics.epoch == 1 { saved = try whole.trainingCheckpoint().value }
        })
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-ft-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.train.pth").path
        try CheckpointWriter.write(Checkpoint(root: try XCTUnwrap(saved), info: FormatInfo(format: .zip)), to: path)
        let back = try TrainingCheckpoint(try CheckpointReader.read(path: path).root)
        XCTAssertEqual(back.epoch, 1)
        XCTAssertEqual(back.progress.stage, 1, "the checkpoint holds the second stage's optimizer")

        let resumed = try FineTuneFixtures.run(o)
        try resumed.resume(from: back)
        let summary = try resumed.run()
        XCTAssertEqual(summary.epochs.map(\.epoch), [2, 3])
        let a = try whole.modelStateDict(), b = try resumed.modelStateDict()
        XCTAssertEqual(a.keys, b.keys)
        for (key, t) in a {
            XCTAssertEqual(try FineTuneFixtures.bits(try XCTUnwrap(b[key])), try FineTuneFixtures.bits(t), "\(key) differs after resume")
        }
        XCTAssertEqual(resumed.steps, whole.steps)
        assertSameTree(try resumed.trainingCheckpoint().optimizer, try whole.trainingCheckpoint().optimizer, rtol: 0)
    }

    /// A tensor that should stay frozen and moves fails the epoch, naming it.
    func testAFrozenTensorThatChangesStopsTheRun() throws {
        let run = try FineTuneFixtures.run(FineTuneFixtures.options(.featureExtract, epochs: 1))
        let conv = try XCTUnwrap(run.fitted.model.namedParameters().first { $0.key == "model.4.bias" }?.parameter)
        XCTAssertTrue(run.frozenKeys.contains("model.4.bias"))
        XCTAssertThrowsError(try run.run(onBatch: { p in if p.batch == 2 { conv.value.values[3] += 1e-6 } })) { error in
            XCTAssertEqual("\(error)", "epoch 1: frozen tensor model.4.bias changed; it must stay bit for bit as it started")
        }
    }

    /// A learning rate that makes the loss NaN stops at the step, naming epoch and batch, with
    /// nothing reported for the epoch.
    func testANonFiniteLossStopsNamingEpochAndBatch() throws {
        var o = FineTuneFixtures.options(.finetune, epochs: 2)
        o.learningRate = 1e12
        let run = try FineTuneFixtures.run(o)
        var epochs = 0
        XCTAssertThrowsError(try run.run(onEpoch: { _ in epochs += 1 })) { error in
            guard case let TrainingError.stopped(epoch, batch, step, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(epoch, 1)
            XCTAssertGreaterThan(batch, 1)
            XCTAssertEqual(step, batch)
            XCTAssertTrue(reason.contains("not finite"), reason)
        }
        XCTAssertEqual(epochs, 0)
    }
}

/// Batch norms under the frozen-tensor check: in feature extraction their statistics are held
/// bit for bit (they run in eval mode); when they train, their statistics move and are not held.
final class FineTuningBatchNormTests: XCTestCase {
    func run(_ mode: FineTuneMode) throws -> (FineTuning, StateDict) {
        let source = try Zoo.make("resnet18", numClasses: 1000, seed: 1)
        let weights = LocatedStateDict(rootPath: "", wrapperPrefix: nil, raw: try source.stateDict())
        var o = FineTuneFixtures.options(mode, epochs: 1)
        o.batchSize = 10
        let run = try FineTuning(model: "resnet18", numClasses: 5, weights: weights, data: FineTuneFixtures.data, options: o)
        return (run, try run.modelStateDict())
    }

    func testFrozenStatisticsStayAndTrainedOnesMove() throws {
        let (frozenRun, before) = try run(.featureExtract)
        XCTAssertEqual(frozenRun.fitted.reinitializedKeys, ["fc.weight", "fc.bias"], "a 5-class head for a 1000-class checkpoint")
        XCTAssertEqual(frozenRun.trainableKeys, ["fc.weight", "fc.bias"])
        for key in ["bn1.running_mean", "layer4.1.bn2.running_var", "layer2.0.downsample.1.num_batches_tracked", "conv1.weight"] {
            XCTAssertTrue(frozenRun.frozenKeys.contains(key), key)
        }
        try frozenRun.run()
        let after = try frozenRun.modelStateDict()
        for (key, t) in before where !key.hasPrefix("fc.") {
            XCTAssertTrue(try XCTUnwrap(after[key]).contiguousBytes() == t.contiguousBytes(), "\(key) moved")
        }
        XCTAssertFalse(try XCTUnwrap(after["fc.weight"]).contiguousBytes() == XCTUnwrap(before["fc.weight"]).contiguousBytes())

        let (trainRun, start) = try run(.finetune)
        XCTAssertEqual(trainRun.frozenKeys, [])
        try trainRun.run()
        let trained = try trainRun.modelStateDict()
        XCTAssertNotEqual(try XCTUnwrap(trained["bn1.running_mean"]).floats(), try XCTUnwrap(start["bn1.running_mean"]).floats())
        XCTAssertEqual(try XCTUnwrap(trained["bn1.num_batches_tracked"]).doubles(), [2], "two batches of ten")
    }
}
