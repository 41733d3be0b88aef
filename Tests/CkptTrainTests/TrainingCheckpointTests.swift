import CkptFormat
import CkptKernels
import CkptNN
import CkptTensor
import Foundation
import XCTest
@testable import CkptTrain

/// Whole `{model, optimizer, scheduler, epoch}` training checkpoints moving between torch and
/// ckpt: SGD with momentum and weight decay, SequentialLR (LinearLR warm-up, then cosine)
/// stepped once per optimizer step, as fixtures/train/train_checkpoint.pth was made.
final class TrainingCheckpointTests: XCTestCase {
    private struct Run {
        var setup: OptimizerFixtures.Setup
        var params: [Parameter]
        var optimizer: SGD
        var schedule: any LearningRateSchedule
    }

    /// The resume case of optimizers.json from scratch (or over `values`), with its schedule.
    private func start(values: [[Float]]? = nil) throws -> Run {
        let s = try OptimizerFixtures.setup()
        let params = try OptimizerFixtures.parameters(s, values: values)
        let sgd = try SGD(groups: OptimizerFixtures.groups(s, s.resume.groups, params))
        let schedule = try ScheduleTests.schedule(try XCTUnwrap(s.resume.scheduler), sgd)
        return Run(setup: s, params: params, optimizer: sgd, schedule: schedule)
    }

    /// `{'model': OrderedDict, 'optimizer': ..., 'scheduler': ..., 'epoch': n}`, as a torch script saves it.
    private func checkpoint(keys: [String], params: [Parameter], optimizer: any Optimizer,
                            schedule: any LearningRateSchedule, epoch: Int) throws -> Value {
        let model = try zip(keys, params).map { (key: Value.string($0), value: Value.tensor(try $1.value.tensor())) }
        return .dict(PyDict(items: [(.string("model"), .dict(PyDict(items: model, kind: .orderedDict))),
                                    (.string("optimizer"), try optimizer.stateDict()),
                                    (.string("scheduler"), schedule.stateDict()),
                                    (.string("epoch"), .int(epoch))]))
    }

    /// torch's checkpoint after 3 steps, loaded into ckpt (schedule made before the optimizer's
    /// state is loaded, as torch's documentation asks), continues with torch's parameters and rates.
    func testTorchTrainingCheckpointResumesInCkpt() throws {
        let root = try XCTUnwrap(try OptimizerFixtures.checkpoint("train_checkpoint.pth").dictValue)
        let model = try XCTUnwrap(root["model"]?.dictValue)
        XCTAssertEqual(model.kind, .orderedDict)
        let values = try model.items.map { try XCTUnwrap($0.value.tensorValue).floats() }
        let run = try start(values: values)
        try run.optimizer.loadStateDict(try XCTUnwrap(root["optimizer"]))
        try run.schedule.loadStateDict(try XCTUnwrap(root["scheduler"]))
        let epoch = try XCTUnwrap(root["epoch"]?.intValue)
        XCTAssertEqual(epoch, 3)
        let expected = run.setup.resume.expected
        let lrs = try XCTUnwrap(run.setup.resume.lrs)
        XCTAssertEqual(run.optimizer.learningRates, lrs[3])
        for t in epoch ..< expected.count {
            try OptimizerFixtures.setGradients(run.setup, run.params, step: t)
            try run.optimizer.step()
            try run.schedule.step()
            XCTAssertEqual(run.params.map(\.value.values), expected[t], "step \(t)")
            XCTAssertEqual(run.schedule.lastLearningRates, lrs[t + 1], "step \(t)")
        }
    }

    /// ckpt's own checkpoint after 3 steps is torch's (same tree, same order, same values), and
    /// survives CkptFormat's writer and reader unchanged. With CKPT_TRAIN_CHECK_DIR set, it is also
    /// left there (with an AdamW + cosine one) for fixtures/train/check_optimizer_state.py.
    func testCkptTrainingCheckpointEqualsTorchsAndRoundTrips() throws {
        let run = try start()
        for t in 0 ..< 3 {
            try OptimizerFixtures.setGradients(run.setup, run.params, step: t)
            try run.optimizer.step()
            try run.schedule.step()
        }
        let ours = try checkpoint(keys: run.setup.keys, params: run.params, optimizer: run.optimizer, schedule: run.schedule, epoch: 3)
        assertSameTree(ours, try OptimizerFixtures.checkpoint("train_checkpoint.pth"), rtol: 0)

        let keep = ProcessInfo.processInfo.environment["CKPT_TRAIN_CHECK_DIR"]
        let dir = keep.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { if keep == nil { try? FileManager.default.removeItem(at: dir) } }
        let path = dir.appendingPathComponent("ckpt_sgd_sequential.pth").path
        try CheckpointWriter.write(Checkpoint(root: ours, info: FormatInfo(format: .zip)), to: path)
        let back = try CheckpointReader.read(path: path)
        XCTAssertTrue(back.info.isWeightsOnlyLoadable)
        assertSameTree(back.root, ours, rtol: 0)

        // AdamW over the adamw case's groups with a cosine schedule: a second layout for the script
        let s = run.setup
        let params = try OptimizerFixtures.parameters(s)
        let adamw = try AdamW(groups: OptimizerFixtures.groups(s, try s.named("adamw").groups, params))
        let cosine = try CosineAnnealingLR(optimizer: adamw, period: 10, minimum: 0.001)
        for t in 0 ..< 4 {
            try OptimizerFixtures.setGradients(s, params, step: t)
            try adamw.step()
            try cosine.step()
        }
        let second = try checkpoint(keys: s.keys, params: params, optimizer: adamw, schedule: cosine, epoch: 4)
        let adamwPath = dir.appendingPathComponent("ckpt_adamw_cosine.pth").path
        try CheckpointWriter.write(Checkpoint(root: second, info: FormatInfo(format: .zip)), to: adamwPath)
        assertSameTree(try CheckpointReader.read(path: adamwPath).root, second, rtol: 0)
    }
}
