import CkptNN
import CkptTensor
import CkptZoo
import XCTest
@testable import CkptTrain

/// Feature caching: where a model splits into a frozen prefix and a head, and a run that trains
/// the head on cached features ending with the same weights, bit for bit, as the run that
/// computes every image's features in every epoch.
final class FeatureCacheTests: XCTestCase {
    /// The head starts at the first trainable module, or at the first dropout before it; nothing
    /// else may train, and none of it outside the tail.
    func testHeadSplitOfEachFamily() throws {
        let resnet = try Zoo.make("resnet18", numClasses: 5, initialize: false)
        resnet.setTraining(true)
        try TrainableSelection.only(["fc"]).apply(to: resnet)
        XCTAssertEqual(HeadSplit.of(resnet)?.boundary, "fc")
        XCTAssertEqual(HeadSplit.of(resnet)?.head.namedParameters().map(\.key), ["fc.weight", "fc.bias"],
                       "the head's keys are the model's")
        try TrainableSelection.only(["layer4", "fc"]).apply(to: resnet)
        XCTAssertNil(HeadSplit.of(resnet), "layer4 is not in the tail")
        try TrainableSelection.only(["bn1"]).apply(to: resnet)
        XCTAssertNil(HeadSplit.of(resnet), "a trainable batch norm in the prefix")
        // frozen batch norms with batch statistics (--frozen-bn train): the prefix depends on the
        // batch, so nothing is cached, and their running statistics are not held frozen
        try TrainableSelection.only(["fc"]).apply(to: resnet)
        XCTAssertTrue(FrozenTensors(model: resnet).keys.contains("layer1.0.bn1.running_mean"))
        for (_, m) in resnet.namedModules() { (m as? BatchNorm2d)?.batchStatisticsWhenFrozen = true }
        XCTAssertNil(HeadSplit.of(resnet), "batch statistics in the prefix")
        let held = FrozenTensors(model: resnet).keys
        XCTAssertTrue(held.contains("layer1.0.bn1.weight"), "the affine parameters stay frozen")
        XCTAssertFalse(held.contains { $0.hasSuffix("running_mean") || $0.hasSuffix("num_batches_tracked") })
        for (_, m) in resnet.namedModules() { (m as? BatchNorm2d)?.batchStatisticsWhenFrozen = false }

        let alexnet = try Zoo.make("alexnet", numClasses: 5, initialize: false)
        alexnet.setTraining(true)
        try TrainableSelection.only(["classifier.6"]).apply(to: alexnet)
        XCTAssertEqual(HeadSplit.of(alexnet)?.boundary, "classifier.0", "the dropout at classifier.0 draws a new mask every step")
        XCTAssertEqual(HeadSplit.of(alexnet)?.head.children.map(\.name), (0 ... 6).map { "classifier.\($0)" })

        let small = try Zoo.make("smallcnn", numClasses: 5, initialize: false)
        small.setTraining(true)
        try TrainableSelection.only(["model.8"]).apply(to: small)
        XCTAssertEqual(HeadSplit.of(small)?.boundary, "model.8")
        try TrainableSelection.only(["model.7", "model.8"]).apply(to: small)
        XCTAssertEqual(HeadSplit.of(small)?.boundary, "model.7")
        try TrainableSelection.only(["model.2", "model.8"]).apply(to: small)
        XCTAssertEqual(HeadSplit.of(small)?.boundary, "model.2", "the first trainable module starts the head")
        try TrainableSelection.only(["model.0", "model.8"]).apply(to: small)
        XCTAssertNil(HeadSplit.of(small), "no frozen prefix: nothing to cache")

        let segnet = try Zoo.make("segnet", initialize: false)
        segnet.setTraining(true)
        try TrainableSelection.all.apply(to: segnet)
        XCTAssertNil(HeadSplit.of(segnet), "segnet's forward does not end in a chain")
    }

    /// The input of a module, captured during a forward, is what the module received.
    func testInputCaptureTakesTheModulesInput() throws {
        let small = try Zoo.make("smallcnn", numClasses: 5, seed: 3)
        let x = Zoo.entries.first { $0.name == "smallcnn" }!.randomInputs(batch: 2, seed: 1)
        let context = ForwardContext()
        context.inputCaptureTarget = "model.8"
        let y = try small.forward(inputs: x, context: context)
        let features = try XCTUnwrap(context.capturedInput)
        XCTAssertEqual(features.shape, [2, 64])
        let fromFeatures = try small.submodule(at: "model.8")!.evaluate([features])
        XCTAssertEqual(fromFeatures.values, y.values, "model.8 on the captured input gives the model's output")
    }

    /// Shuffled two-stage run on the digits: stage 1 trains the head on cached features, stage 2
    /// everything on images; the weights and every epoch's metrics equal the uncached run's bit for bit.
    func testCachedRunEqualsTheUncachedRun() throws {
        var o = FineTuneFixtures.options(.twoStage, epochs: 3)
        o.stage1Epochs = 2
        o.shuffle = true
        o.seed = 11
        let cached = try FineTuneFixtures.run(o)
        XCTAssertEqual(cached.cachedHeadBoundary, "model.8")
        let a = try cached.run()
        o.cacheFeatures = false
        let uncached = try FineTuneFixtures.run(o)
        XCTAssertNil(uncached.cachedHeadBoundary)
        let b = try uncached.run()
        XCTAssertEqual(a.epochs.map(\.trainLoss), b.epochs.map(\.trainLoss))
        XCTAssertEqual(a.epochs.map(\.validationLoss), b.epochs.map(\.validationLoss))
        XCTAssertEqual(a.epochs.map(\.validationAccuracy), b.epochs.map(\.validationAccuracy))
        let wa = try cached.modelStateDict(), wb = try uncached.modelStateDict()
        XCTAssertEqual(wa.keys, wb.keys)
        for (key, t) in wb {
            XCTAssertEqual(try FineTuneFixtures.bits(try XCTUnwrap(wa[key])), try FineTuneFixtures.bits(t), "\(key)")
        }
        XCTAssertNil(cached.features, "stage 2 trains everything: the cache is dropped")
    }

    /// Augmentation draws new crops every epoch: nothing is cached.
    func testAugmentedRunsDoNotCache() throws {
        var o = FineTuneFixtures.options(.featureExtract, epochs: 1)
        o.augment = true
        XCTAssertNil(try FineTuneFixtures.run(o).cachedHeadBoundary)
        o.augment = false
        XCTAssertEqual(try FineTuneFixtures.run(o).cachedHeadBoundary, "model.8")
    }
}
