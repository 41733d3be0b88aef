import CkptKernels
import CkptNN
import CkptSurgery
import CkptTensor
import CkptZoo

// N images, C channels, H rows, W columns (NCHW).

/// One transplanted block run beside the source module it came from.
public struct BlockCheck: Sendable, Hashable {
    /// The target block (`enc1`).
    public var block: String
    /// The source it came from, as PyTorch would index it (`features[3:7]`, `layer1`).
    public var source: String
    /// Largest |target − source| over the outputs; nil when the block was not run.
    public var maxAbsDiff: Double?
    /// Input shape the two were run on.
    public var inputShape: [Int]
    /// How the inputs were made, or why the block was not run.
    public var note: String?
    /// The difference once the output is cast as asked (`--dtype`), when that cast rounds.
    public var maxAbsDiffAfterCast: Double?
    /// True when the block was run and its outputs agree within `tolerance`.
    public func passes(tolerance: Double) -> Bool { maxAbsDiff.map { $0 <= tolerance } ?? true }
}

/// Proof that a transplant landed: every transplanted block and the source slice it came from
/// run in eval mode on the same seeded inputs, and the largest output difference is reported.
///
/// Needs both architectures from the zoo; the models are built unallocated and only the blocks
/// being compared are loaded, one block at a time, so memory stays near one block's weights.
public enum TransplantProof {
    /// Largest difference a block may show (`ckpt transplant` fails above it unless `--no-verify`).
    public static let tolerance = 1e-5

    /// Checks every block a map rule wrote, and every top-level block copied whole by name.
    /// - Parameters:
    ///   - plan: the applied plan.
    ///   - source: the source state dict (wrapper prefix removed) and its zoo model and class count.
    ///   - output: the written state dict and the target's zoo model and class count.
    /// - Throws: `NNError` / `KernelError` when a block cannot run (a bug, not a mismatch).
    public static func verify(plan: MatchPlan, source: StateDict, sourceModel: String, sourceClasses: Int,
                              output: StateDict, targetModel: String, targetClasses: Int, seed: UInt64 = 0) throws -> [BlockCheck] {
        var checks: [BlockCheck] = []
        var byBlock: [String: [MatchPlan.Entry]] = [:]
        for e in plan.entries { byBlock[MatchPlan.block(of: e.spec.key), default: []].append(e) }
        var ruled = Set<String>()
        for rule in plan.rules {
            guard let block = rule.targetBlock else { continue }
            ruled.insert(MatchPlan.block(of: block))
            let entries = plan.entries.filter { $0.spec.key.hasPrefix(block + ".") }
            let description: String
            let sourcePaths: (container: String, range: Range<Int>?)
            switch rule.action {
            case let .slice(container, start, end, _):
                let c = container ?? Planner.firstNumberedContainer(source.keys) ?? ""
                let upper = end ?? Int.max
                description = "\(c)[\(start):\(end.map(String.init) ?? "")]"
                sourcePaths = (c, start ..< upper)
            case let .move(from, _):
                description = from
                sourcePaths = (from, nil)
            default: continue
            }
            if let bad = entries.first(where: { !$0.isCovered }) {
                checks.append(BlockCheck(block: block, source: description, maxAbsDiff: nil, inputShape: [],
                                         note: "not run: \(bad.spec.key) was not transplanted"))
                continue
            }
            checks.append(try compare(block: block, description: description, sourcePaths: sourcePaths, plan: plan,
                                      source: source, sourceModel: sourceModel, sourceClasses: sourceClasses,
                                      output: output, targetModel: targetModel, targetClasses: targetClasses, seed: seed))
        }
        // blocks taken whole under their own names; a block taken in part (a classifier whose head
        // is new) is checked child by child, one level down
        func takenWhole(_ entries: [MatchPlan.Entry]) -> Bool {
            entries.contains { $0.spec.role == .parameter } && entries.allSatisfy { e in
                switch e.action {
                case let .copy(from), let .adapt(from, .inputChannels): return from == e.spec.key
                default: return e.action == .fill
                }
            }
        }
        for c in plan.coverage where !ruled.contains(c.block) && c.coveredTensors > 0 {
            let entries = byBlock[c.block] ?? []
            var paths: [String] = []
            if takenWhole(entries) {
                paths = [c.block]
            } else {
                var children: [String] = []
                for e in entries {
                    let rest = e.spec.key.dropFirst(c.block.count + 1)
                    guard let dot = rest.firstIndex(of: ".") else { continue }
                    let child = c.block + "." + rest[..<dot]
                    if children.last != child && !children.contains(child) { children.append(child) }
                }
                paths = children.filter { child in takenWhole(entries.filter { $0.spec.key.hasPrefix(child + ".") }) }
            }
            for path in paths {
                checks.append(try compare(block: path, description: path, sourcePaths: (path, nil), plan: plan,
                                          source: source, sourceModel: sourceModel, sourceClasses: sourceClasses,
                                          output: output, targetModel: targetModel, targetClasses: targetClasses, seed: seed))
            }
        }
        return checks
    }

    /// Loads one block on each side and runs both on the same input.
    static func compare(block: String, description: String, sourcePaths: (container: String, range: Range<Int>?), plan: MatchPlan,
                        source: StateDict, sourceModel: String, sourceClasses: Int,
                        output: StateDict, targetModel: String, targetClasses: Int, seed: UInt64) throws -> BlockCheck {
        let targetRoot = try Zoo.makeUnallocated(targetModel, numClasses: targetClasses)
        guard var targetBlock = targetRoot.submodule(at: block) else {
            return BlockCheck(block: block, source: description, maxAbsDiff: nil, inputShape: [], note: "not run: \(targetModel) has no module \(block)")
        }
        // a first convolution adapted to other input channels than the zoo's (--in-channels):
        // the same layer with that many inputs
        for e in plan.entries where e.spec.key.hasPrefix(block + ".") {
            guard case let .adapt(_, .inputChannels(_, to, _)) = e.action else { continue }
            let path = String(StateDict.modulePath(of: e.spec.key).dropFirst(block.count)).drop { $0 == "." }
            guard let conv = targetBlock.submodule(at: String(path)) as? Conv2d, conv.geometry.inputChannels != to else { continue }
            let g = conv.geometry
            var rng = SeededGenerator.specOnly
            let wider = Conv2d(to, g.outputChannels, kernelSize: g.kernelSize.height, stride: g.stride.height, padding: g.padding.height,
                               dilation: g.dilation.height, groups: g.groups, bias: conv.bias != nil, rng: &rng)
            if path.isEmpty {
                targetBlock = wider
            } else {
                let parent = targetBlock.submodule(at: StateDict.modulePath(of: String(path)))
                parent?.replaceChild(named: StateDict.leafName(of: String(path)), with: wider)
            }
        }
        // the source side: a module, or the renumbered slice of a container's children, unloaded
        let sourceRoot = try Zoo.makeUnallocated(sourceModel, numClasses: sourceClasses)
        var sourceBlock: Module?
        let sourceKey: (String) -> String?
        if let range = sourcePaths.range {
            guard let container = sourceRoot.submodule(at: sourcePaths.container) else {
                return BlockCheck(block: block, source: description, maxAbsDiff: nil, inputShape: [], note: "not run: \(sourceModel) has no module \(sourcePaths.container)")
            }
            let children = container.children.filter { Int($0.name).map { range.contains($0) } ?? false }
            sourceBlock = Sequential(children.map(\.module))
            let prefix = sourcePaths.container.isEmpty ? "" : sourcePaths.container + "."
            sourceKey = { key in
                guard key.hasPrefix(prefix) else { return nil }
                let tail = key.dropFirst(prefix.count)
                guard let dot = tail.firstIndex(of: "."), let i = Int(tail[..<dot]), range.contains(i) else { return nil }
                return "\(i - range.lowerBound)." + tail[tail.index(after: dot)...]
            }
        } else {
            guard let m = sourceRoot.submodule(at: sourcePaths.container) else {
                return BlockCheck(block: block, source: description, maxAbsDiff: nil, inputShape: [], note: "not run: \(sourceModel) has no module \(sourcePaths.container)")
            }
            sourceBlock = m
            let prefix = sourcePaths.container + "."
            sourceKey = { $0.hasPrefix(prefix) ? String($0.dropFirst(prefix.count)) : nil }
        }
        let targetPrefix = block + "."

        // inputs: channels from each side's first layer; an adapted input conv gets inputs whose
        // channels make the two computations equal
        guard let sb = sourceBlock, let (sourceShape, _) = inputShape(of: sb), let (targetShape, _) = inputShape(of: targetBlock) else {
            return BlockCheck(block: block, source: description, maxAbsDiff: nil, inputShape: [], note: "not run: no convolution, batch norm or linear layer")
        }
        var rng = SeededGenerator(seed: seed ^ 0x5EED)
        let x = Initialization.uniform(targetShape, bound: 1, using: &rng)
        var xs = x
        var xt = x
        var note: String?
        if sourceShape != targetShape {
            let adaptation = plan.entries.lazy.compactMap { e -> MatchPlan.Adaptation? in
                guard e.spec.key.hasPrefix(targetPrefix), case let .adapt(_, a) = e.action, case .inputChannels = a else { return nil }
                return a
            }.first
            guard case let .inputChannels(from, to, mode)? = adaptation, sourceShape.count == 4,
                  from == sourceShape[1], to == targetShape[1],
                  let inputs = channelInputs(x, from: from, to: to, mode: mode) else {
                return BlockCheck(block: block, source: description, maxAbsDiff: nil, inputShape: targetShape,
                                  note: "not run: input shapes \(sourceShape) and \(targetShape) differ")
            }
            (xs, xt) = inputs.pair
            note = inputs.note
        }
        // one side at a time, so memory holds one block's weights; unfused, im2col: one call per
        // block, where Winograd's weight transform and batch-norm folding would cost more than the
        // convolution, and both sides take the same path
        func run(_ m: Module, _ x: DenseTensor) throws -> DenseTensor {
            for (_, c) in m.namedModules() { (c as? Conv2d)?.algorithm = .im2col }
            return try m.evaluate([x], fuse: false)
        }
        try load(sb, from: source, renaming: sourceKey)
        let ys = try run(sb, xs)
        sourceBlock = nil
        try load(targetBlock, from: output, renaming: { $0.hasPrefix(targetPrefix) ? String($0.dropFirst(targetPrefix.count)) : nil })
        let yt = try run(targetBlock, xt)
        guard ys.shape == yt.shape else {
            return BlockCheck(block: block, source: description, maxAbsDiff: .infinity, inputShape: xt.shape,
                              note: "output shapes differ: \(ys.shape) and \(yt.shape)")
        }
        var worst = 0.0
        for (a, b) in zip(ys.values, yt.values) {
            let d = Double(abs(a - b))
            if d > worst || d.isNaN { worst = d.isNaN ? .infinity : d }
        }
        return BlockCheck(block: block, source: description, maxAbsDiff: worst, inputShape: xt.shape, note: note)
    }

    /// Inputs on which a convolution adapted from `from` to `to` channels by `mode` computes what
    /// the source computed. Every mode makes the adapted weight `W' = W·A` for a `from × to`
    /// matrix `A`, so the target on `x'` equals the source on `A·x'`: for `repeat`,
    /// `x_c = (from/to)·Σ_{j ≡ c} x'_j` (channels that repeat the source's, folded back); for `sum`,
    /// every source channel is the mean of the target's; for `mean`, their sum over `from`; for
    /// `zero`, the shared channels and zero elsewhere.
    static func channelInputs(_ xt: DenseTensor, from: Int, to: Int, mode: InputChannelMode) -> (pair: (DenseTensor, DenseTensor), note: String)? {
        let (n, h, w) = (xt.shape[0], xt.shape[2], xt.shape[3])
        let plane = h * w
        func a(_ c: Int, _ j: Int) -> Float {
            switch mode {
            case .repeat: return j % from == c ? Float(from) / Float(to) : 0
            case .sum: return 1 / Float(to)
            case .mean: return 1 / Float(from)
            case .zero: return c == j ? 1 : 0
            case .automatic, .random: return .nan
            }
        }
        if mode == .automatic || mode == .random { return nil }
        var xs = DenseTensor(shape: [n, from, h, w])
        for i in 0 ..< n {
            for c in 0 ..< from {
                for j in 0 ..< to {
                    let f = a(c, j)
                    guard f != 0 else { continue }
                    for p in 0 ..< plane { xs.values[(i * from + c) * plane + p] += f * xt.values[(i * to + j) * plane + p] }
                }
            }
        }
        return ((xs, xt), "source input folded from the target's \(to) channels as the \(mode.rawValue) rule spreads them")
    }

    /// The input shape a block takes, from its first layer with weights: `[2, C, S, S]` for a
    /// convolution or batch norm, with `S` just large enough for the block's poolings and strides
    /// (small: the proof is about weights, not speed), `[2, F]` for a linear layer. A block that
    /// flattens its features into a linear layer without adaptive pooling (the seed's small CNN
    /// taken whole) gets the size whose features fill that layer.
    static func inputShape(of block: Module) -> ([Int], Module)? {
        let modules = block.namedModules().map(\.module)
        let halvings = modules.filter { m in
            if m is MaxPool2d { return true }
            if let c = m as? Conv2d { return c.geometry.stride.height > 1 }
            return false
        }.count
        var s = min(128, max(8, 2 << halvings))
        if modules.contains(where: { $0 is Flatten }), !modules.contains(where: { $0 is AdaptiveAvgPool2d }),
           let li = modules.firstIndex(where: { $0 is Linear }), let linear = modules[li] as? Linear,
           let conv = modules[..<li].last(where: { $0 is Conv2d }) as? Conv2d {
            let features = linear.weight.value.shape[1], channels = conv.geometry.outputChannels
            let side = Int(Double(features / max(channels, 1)).squareRoot().rounded())
            if side > 0, side * side * channels == features { s = side << halvings }
        }
        for (_, m) in block.namedModules() {
            switch m {
            case let c as Conv2d: return ([2, c.geometry.inputChannels, s, s], m)
            case let bn as BatchNorm2d: return ([2, bn.weight.value.shape[0], s, s], m)
            case let l as Linear: return ([2, l.weight.value.shape[1]], m)
            case let t as ConvTranspose2d: return ([2, t.weight.value.shape[0], s, s], m)
            default: continue
            }
        }
        return nil
    }

    /// Loads `module` strictly from the keys of `stateDict` that `renaming` maps to its own keys.
    static func load(_ module: Module, from stateDict: StateDict, renaming: (String) -> String?) throws {
        var own = StateDict()
        for (k, t) in stateDict { if let r = renaming(k) { own[r] = t } }
        // a batch norm from before torch 0.4.1 has no num_batches_tracked; eval never reads it
        let report = try module.load(stateDict: own, strictness: .allowMissing)
        if let m = report.missing.first(where: { !$0.key.hasSuffix("num_batches_tracked") }) {
            var strict = report
            strict.missing = [m]
            throw NNError.load(strict)
        }
    }
}
