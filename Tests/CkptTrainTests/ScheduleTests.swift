import CkptFormat
import CkptKernels
import CkptNN
import CkptTensor
import Foundation
import XCTest
@testable import CkptTrain

/// Learning-rate schedules against torch 2.15's (fixtures/train/schedules.json): the rate of both
/// groups after construction and after each of 30 steps, and the schedules' state dicts.
final class ScheduleTests: XCTestCase {
    /// An SGD over two one-parameter groups with learning rates 0.1 and 0.05, as the generator's.
    static func optimizer() throws -> SGD {
        try SGD(groups: [ParameterGroup(parameters: [("a", Parameter(DenseTensor(shape: [2])))], learningRate: 0.1, momentum: 0.9),
                         ParameterGroup(parameters: [("b", Parameter(DenseTensor(shape: [3])))], learningRate: 0.05, momentum: 0.9)])
    }

    /// The schedule a schedules.json spec describes, on `optimizer`.
    static func schedule(_ spec: OptimizerFixtures.ScheduleSpec, _ optimizer: any Optimizer) throws -> any LearningRateSchedule {
        try chainable(spec, optimizer) ?? SequentialLR(
            optimizer: optimizer,
            schedules: try XCTUnwrap(spec.schedulers).map { try XCTUnwrap(try chainable($0, optimizer)) },
            milestones: try XCTUnwrap(spec.milestones))
    }

    static func chainable(_ spec: OptimizerFixtures.ScheduleSpec, _ optimizer: any Optimizer) throws -> ChainableSchedule? {
        switch spec.kind {
        case "StepLR":
            return try StepLR(optimizer: optimizer, stepSize: try XCTUnwrap(spec.step_size), gamma: try XCTUnwrap(spec.gamma))
        case "CosineAnnealingLR":
            return try CosineAnnealingLR(optimizer: optimizer, period: try XCTUnwrap(spec.T_max), minimum: try XCTUnwrap(spec.eta_min))
        case "LinearLR":
            return try LinearLR(optimizer: optimizer, startFactor: try XCTUnwrap(spec.start_factor),
                                endFactor: try XCTUnwrap(spec.end_factor), totalIterations: try XCTUnwrap(spec.total_iters))
        default:
            return nil
        }
    }

    private struct ScheduleCase: Decodable {
        var name: String
        var scheduler: OptimizerFixtures.ScheduleSpec
        var lrs: [[Double]]
        var spec: OptimizerFixtures.ScheduleSpec { scheduler }
    }

    private struct ScheduleFile: Decodable { var cases: [ScheduleCase] }

    private static func cases() throws -> [ScheduleCase] {
        try OptimizerFixtures.decode(ScheduleFile.self, "schedules.json").cases
    }

    /// Every rate, every epoch, equal to torch's (asserted to 1e-12 relative; they agree exactly).
    func testEveryScheduleMatchesTorchForThirtyEpochs() throws {
        var exact = 0, total = 0
        for c in try Self.cases() {
            let opt = try Self.optimizer()
            let schedule = try Self.schedule(c.spec, opt)
            XCTAssertEqual(c.lrs.count, 31)
            for (epoch, expected) in c.lrs.enumerated() {
                if epoch > 0 {
                    try opt.step()
                    try schedule.step()
                }
                XCTAssertEqual(schedule.lastEpoch, epoch)
                XCTAssertEqual(opt.learningRates, schedule.lastLearningRates)
                for (ours, torch) in zip(schedule.lastLearningRates, expected) {
                    XCTAssertEqual(ours, torch, accuracy: 1e-12 * abs(torch), "\(c.name) epoch \(epoch)")
                    exact += ours == torch ? 1 : 0
                    total += 1
                }
            }
        }
        print("schedules: \(exact) of \(total) learning rates equal torch's bit for bit")
        XCTAssertEqual(exact, total)
    }

    /// After 7 steps each schedule's state dict is torch's: keys, order, types and values.
    func testScheduleStateDictsEqualTorchsAfterSevenSteps() throws {
        let torch = try XCTUnwrap(try OptimizerFixtures.checkpoint("schedulers_epoch7.pth").dictValue)
        for c in try Self.cases() {
            let opt = try Self.optimizer()
            let schedule = try Self.schedule(c.spec, opt)
            for _ in 0 ..< 7 { try schedule.step() }
            assertSameTree(schedule.stateDict(), try XCTUnwrap(torch[c.name]), path: c.name, rtol: 0)
        }
    }

    /// torch's state at epoch 7, loaded into fresh schedules (with the optimizer at torch's rates,
    /// as its own state dict would set them), continues with torch's rates to epoch 30.
    func testTorchScheduleStateLoadsAndContinues() throws {
        let torch = try XCTUnwrap(try OptimizerFixtures.checkpoint("schedulers_epoch7.pth").dictValue)
        for c in try Self.cases() {
            let opt = try Self.optimizer()
            let schedule = try Self.schedule(c.spec, opt)
            try schedule.loadStateDict(try XCTUnwrap(torch[c.name]))
            XCTAssertEqual(schedule.lastEpoch, 7)
            XCTAssertEqual(schedule.lastLearningRates, c.lrs[7])
            for i in opt.groups.indices { opt.groups[i].learningRate = c.lrs[7][i] }
            for epoch in 8 ... 30 {
                try schedule.step()
                XCTAssertEqual(schedule.lastLearningRates, c.lrs[epoch], "\(c.name) epoch \(epoch)")
            }
        }
    }

    func testInvalidSchedulesAreRefusedWithOneLine() throws {
        let opt = try Self.optimizer()
        func message(_ make: () throws -> Any) -> String {
            do { _ = try make(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(message { try StepLR(optimizer: opt, stepSize: 0) }, "StepLR: step size must be at least 1, got 0")
        XCTAssertEqual(message { try CosineAnnealingLR(optimizer: opt, period: 0) }, "CosineAnnealingLR: T_max must be at least 1, got 0")
        XCTAssertEqual(message { try LinearLR(optimizer: opt, startFactor: 0) }, "LinearLR: start factor must be in (0, 1], got 0.0")
        XCTAssertEqual(message { try LinearLR(optimizer: opt, endFactor: 1.5) }, "LinearLR: end factor must be in [0, 1], got 1.5")
        let warm = try LinearLR(optimizer: opt)
        let other = try LinearLR(optimizer: try Self.optimizer())
        XCTAssertEqual(message { try SequentialLR(optimizer: opt, schedules: [warm], milestones: [3]) },
                       "SequentialLR: expects one milestone fewer than schedules, got 1 schedule(s) and 1 milestone(s)")
        XCTAssertEqual(message { try SequentialLR(optimizer: opt, schedules: [warm, other], milestones: [3]) },
                       "SequentialLR: schedule 1 (LinearLR) sets another optimizer's rates")
        XCTAssertEqual(message { try SequentialLR(optimizer: opt, schedules: [], milestones: []) }, "SequentialLR: expects at least one schedule, got none")
        // a state dict for three groups
        let step = try StepLR(optimizer: opt, stepSize: 3)
        var state = try XCTUnwrap(step.stateDict().dictValue)
        state.items[2].value = .list([.float(0.1), .float(0.1), .float(0.1)])
        XCTAssertEqual(message { try step.loadStateDict(.dict(state)) },
                       "StepLR state dict: 'base_lrs': holds 3 learning rate(s), the optimizer has 2 parameter group(s)")
        XCTAssertEqual(step.baseLearningRates, [0.1, 0.05])
    }
}
