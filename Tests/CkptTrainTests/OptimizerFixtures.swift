import CkptFormat
import CkptKernels
import CkptNN
import CkptTensor
import Foundation
import XCTest
@testable import CkptTrain

/// Readers for fixtures/train (written by generate_optimizers.py with real torch), and the
/// comparisons the optimizer and schedule tests share.
enum OptimizerFixtures {
    static func url(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/train/\(name)")
    }

    /// A fixture JSON file decoded with `JSONDecoder`, which reads every double exactly
    /// (`JSONSerialization` on Linux rounds some 17-digit values by an ulp or more).
    static func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(type, from: try Data(contentsOf: url(name)))
    }

    /// The root object of a torch-saved fixture file, read with CkptFormat's reader.
    static func checkpoint(_ name: String) throws -> Value {
        try CheckpointReader.read(path: url(name).path).root
    }

    /// One group's hyper-parameters as the generator passed them to torch.
    struct GroupSpec: Decodable {
        var lr: Double
        var momentum: Double?
        var dampening: Double?
        var weight_decay: Double?
        var nesterov: Bool?
        var betas: [Double]?
        var eps: Double?
    }

    /// A schedule as the generator built it (`kind` is torch's class name).
    struct ScheduleSpec: Decodable {
        var kind: String
        var step_size: Int?
        var gamma: Double?
        var T_max: Int?
        var eta_min: Double?
        var start_factor: Double?
        var end_factor: Double?
        var total_iters: Int?
        var milestones: [Int]?
        var schedulers: [ScheduleSpec]?
    }

    /// One optimizer case: its groups and torch's parameters after each step
    /// (`trajectory[t][k]`); the resume case also has a schedule and its rates.
    struct Case: Decodable {
        var name: String
        var optimizer: String
        var groups: [GroupSpec]
        var trajectory: [[[Double]]]
        var scheduler: ScheduleSpec?
        var lrs: [[Double]]?

        /// Torch's parameter values after each step, as float32.
        var expected: [[[Float]]] { trajectory.map { $0.map { $0.map { Float($0) } } } }
    }

    /// One 64×33 parameter after 3 steps of Adam and AdamW; its values and gradients follow the
    /// formulas the generator documents.
    struct Large: Decodable {
        var shape: [Int]
        var steps: Int
        var lr: Double
        var adam: [Double]
        var adamw: [Double]
    }

    /// optimizers.json: the parameters, their gradients per step (nil where torch's `p.grad`
    /// was None) and the cases.
    struct Setup: Decodable {
        var shapes: [[Int]]
        var keys: [String]
        var groups: [[Int]]
        var initial: [[Double]]
        var gradients: [[[Double]?]]
        var cases: [Case]
        var resume: Case
        var large: Large

        func named(_ name: String) throws -> Case { try XCTUnwrap(cases.first { $0.name == name }, name) }
    }

    static func setup() throws -> Setup { try decode(Setup.self, "optimizers.json") }

    static func parameters(_ s: Setup, values: [[Float]]? = nil) throws -> [Parameter] {
        try zip(s.shapes, values ?? s.initial.map { $0.map { Float($0) } }).map { Parameter(try DenseTensor(shape: $0, values: $1)) }
    }

    /// The case's groups over `params`, every hyper-parameter as the generator gave it.
    static func groups(_ s: Setup, _ specs: [GroupSpec], _ params: [Parameter]) -> [ParameterGroup] {
        zip(s.groups, specs).map { members, spec in
            var g = ParameterGroup(parameters: members.map { (s.keys[$0], params[$0]) }, learningRate: spec.lr)
            g.weightDecay = spec.weight_decay ?? 0
            g.momentum = spec.momentum ?? 0
            g.dampening = spec.dampening ?? 0
            g.nesterov = spec.nesterov ?? false
            if let b = spec.betas { g.betas = (b[0], b[1]) }
            g.eps = spec.eps ?? 1e-8
            return g
        }
    }

    /// The case's optimizer over fresh parameters (or `values`).
    static func make(_ s: Setup, _ c: Case, values: [[Float]]? = nil) throws -> (params: [Parameter], optimizer: any Optimizer) {
        let params = try parameters(s, values: values)
        return (params, try optimizer(c.optimizer, groups(s, c.groups, params)))
    }

    static func optimizer(_ kind: String, _ groups: [ParameterGroup]) throws -> any Optimizer {
        switch kind {
        case "SGD": return try SGD(groups: groups)
        case "Adam": return try Adam(groups: groups)
        case "AdamW": return try AdamW(groups: groups)
        default: throw OptimizerError(.unsupported, "fixture", "unknown optimizer \(kind)")
        }
    }

    static func setGradients(_ s: Setup, _ params: [Parameter], step t: Int) throws {
        for (k, p) in params.enumerated() {
            try p.setGradient(try s.gradients[t][k].map { try DenseTensor(shape: s.shapes[k], values: $0.map { Float($0) }) })
        }
    }

    /// Largest |ours − torch| over a tensor, relative to the tensor's largest magnitude in torch.
    static func relativeDifference(_ ours: [Float], _ torch: [Float]) -> Double {
        let scale = torch.reduce(0) { max($0, Double(abs($1))) }
        let diff = zip(ours, torch).reduce(0) { max($0, Double(abs($1.0 - $1.1))) }
        return scale > 0 ? diff / scale : diff
    }

    /// Float32 elements that differ, out of all.
    static func differingElements(_ ours: [Float], _ torch: [Float]) -> Int {
        zip(ours, torch).filter { $0 != $1 }.count
    }
}

/// Checks that two object trees are equal as torch would see them: same container kinds, dict
/// keys in the same order, same scalar types and values (floats exactly), same tensor dtype and
/// shape, tensor values within `rtol` of the tensor's largest magnitude.
func assertSameTree(_ a: Value, _ b: Value, path: String = "", rtol: Double = 1e-6,
                    file: StaticString = #filePath, line: UInt = #line) {
    let here = path.isEmpty ? "<root>" : path
    switch (a, b) {
    case let (.dict(x), .dict(y)):
        XCTAssertEqual(x.kind, y.kind, "\(here): dict kind", file: file, line: line)
        XCTAssertEqual(x.items.map(\.key.pathComponent), y.items.map(\.key.pathComponent), "\(here): keys", file: file, line: line)
        XCTAssertEqual(x.items.map(\.key.typeName), y.items.map(\.key.typeName), "\(here): key types", file: file, line: line)
        for (p, q) in zip(x.items, y.items) {
            assertSameTree(p.value, q.value, path: path.isEmpty ? p.key.pathComponent : path + "." + p.key.pathComponent,
                           rtol: rtol, file: file, line: line)
        }
    case let (.list(x), .list(y)), let (.tuple(x), .tuple(y)):
        XCTAssertEqual(x.count, y.count, "\(here): length", file: file, line: line)
        for (i, (p, q)) in zip(x, y).enumerated() { assertSameTree(p, q, path: "\(path)[\(i)]", rtol: rtol, file: file, line: line) }
    case let (.tensor(x), .tensor(y)):
        XCTAssertEqual(x.dtype, y.dtype, "\(here): dtype", file: file, line: line)
        XCTAssertEqual(x.shape, y.shape, "\(here): shape", file: file, line: line)
        guard let u = try? x.floats(), let v = try? y.floats() else { return XCTFail("\(here): unreadable tensor", file: file, line: line) }
        XCTAssertLessThanOrEqual(OptimizerFixtures.relativeDifference(u, v), rtol, "\(here): values", file: file, line: line)
    case let (.float(x), .float(y)): XCTAssertEqual(x, y, "\(here)", file: file, line: line)
    case let (.int(x), .int(y)): XCTAssertEqual(x, y, "\(here)", file: file, line: line)
    case let (.bool(x), .bool(y)): XCTAssertEqual(x, y, "\(here)", file: file, line: line)
    case let (.string(x), .string(y)): XCTAssertEqual(x, y, "\(here)", file: file, line: line)
    case (.none, .none): break
    default: XCTFail("\(here): \(a.typeName) against \(b.typeName)", file: file, line: line)
    }
}
