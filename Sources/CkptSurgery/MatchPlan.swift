import CkptTensor

/// What will happen to every target key and every source key when weights are fitted to a
/// model: the one vocabulary of `forward`, `transplant` and `finetune`.
///
/// A plan is made before anything is read or written (`Planner.plan`), printed by one
/// formatter, and applied by `MatchPlan.apply`; what a load reports is the applied plan.
public struct MatchPlan: Sendable {
    /// Why a target key gets a fresh value although the user may not have asked for one.
    public enum Reason: Sendable, Hashable {
        /// The classifier head, re-initialised for `--num-classes`.
        case head
        /// The first convolution, re-initialised by `--in-channels-mode random`.
        case inputConvolution
        /// A module some of whose tensors could not be taken: the whole module is re-initialised.
        case atomic(module: String, because: String)

        /// True when the user asked for it.
        public var isRequested: Bool {
            switch self {
            case .head, .inputConvolution: return true
            case .atomic: return false
            }
        }

        /// One phrase for reports.
        public var text: String {
            switch self {
            case .head: return "new head"
            case .inputConvolution: return "--in-channels-mode random"
            case let .atomic(m, why): return "module \(m.isEmpty ? "(top)" : m) re-initialised whole: \(why)"
            }
        }
    }

    /// How a tensor is changed on its way from source to target.
    public enum Adaptation: Sendable, Hashable {
        /// The first convolution's input channels, by `mode` (timm's `adapt_input_conv` by default).
        case inputChannels(from: Int, to: Int, mode: InputChannelMode)
        /// The head's rows for classes present in both label lists; the rest re-initialised.
        case keepClasses(rows: [Int?])

        /// One phrase for reports.
        public var text: String {
            switch self {
            case let .inputChannels(from, to, mode): return "input channels \(from) -> \(to) (\(mode.description))"
            case let .keepClasses(rows):
                return "kept \(rows.compactMap { $0 }.count) of \(rows.count) classes, others re-initialised"
            }
        }
    }

    /// What happens to one target key.
    public enum Action: Sendable, Hashable {
        /// Taken unchanged from a source key.
        case copy(from: String)
        /// Computed from a source key.
        case adapt(from: String, Adaptation)
        /// `num_batches_tracked` absent from an older checkpoint: zero, as torch's BatchNorm fills it.
        case fill
        /// Given a fresh value for `reason`.
        case reinitialize(Reason)
        /// No source key: a fresh value.
        case missing
        /// A source key of another shape: a fresh value.
        case mismatch(from: String, sourceShape: [Int])
    }

    /// One target key and what happens to it.
    public struct Entry: Sendable, Hashable {
        /// The target's key, shape and dtype.
        public var spec: ParameterSpec
        /// What happens.
        public var action: Action
        /// The rules that produced the source key, as text (`features.3:7=enc1 (recipe segnet)`).
        public var rule: String?

        /// True when the value comes from the source (copied, adapted or filled).
        public var isCovered: Bool {
            switch action {
            case .copy, .adapt, .fill: return true
            case .reinitialize, .missing, .mismatch: return false
            }
        }

        /// The source key it comes from, if any.
        public var sourceKey: String? {
            switch action {
            case let .copy(k), let .adapt(k, _), let .mismatch(k, _): return k
            case .fill, .reinitialize, .missing: return nil
            }
        }

        /// True when the value must be created by an initialiser (re-initialised, missing or
        /// mismatched, and the rows a keep-classes adaptation does not keep).
        public var needsInitialValue: Bool {
            switch action {
            case .copy, .fill: return false
            case .reinitialize, .missing, .mismatch: return true
            case let .adapt(_, a):
                if case .keepClasses = a { return true }
                return false
            }
        }
    }

    /// A source key no target key takes.
    public struct Unused: Sendable, Hashable {
        /// The key (wrapper prefix removed).
        public var key: String
        /// Its shape.
        public var shape: [Int]
        /// Why it is not used.
        public var reason: String

        /// The reason of a key the target does not have (`load_state_dict`'s "unexpected").
        public static let noSuchKey = "the target has no key of that name"
    }

    /// Coverage of one top-level block of the target.
    public struct Coverage: Sendable, Hashable {
        /// The block (`enc1`, `layer3`, `fc`).
        public var block: String
        /// Target tensors in the block.
        public var tensors: Int
        /// Of those, taken from the source.
        public var coveredTensors: Int
        /// Target bytes in the block.
        public var bytes: Int
        /// Of those, taken from the source.
        public var coveredBytes: Int

        /// A block's coverage.
        public init(block: String, tensors: Int, coveredTensors: Int, bytes: Int, coveredBytes: Int) {
            self.block = block
            self.tensors = tensors
            self.coveredTensors = coveredTensors
            self.bytes = bytes
            self.coveredBytes = coveredBytes
        }

        /// Covered share of the bytes, 0…1 (1 for an empty block).
        public var fraction: Double { bytes == 0 ? 1 : Double(coveredBytes) / Double(bytes) }
    }

    /// Every target key in the target's order.
    public var entries: [Entry]
    /// Source keys not used, in source order.
    public var unused: [Unused]
    /// The rules in force, in the order they were applied.
    public var rules: [TransplantRule]
    /// Things the planner decided on its own that a user should know (a recipe skipped).
    public var notes: [String]
    /// True when the target has values of its own (a template state dict): keys the source does
    /// not cover keep them, as `model_dict.update(pretrained); model.load_state_dict(model_dict)`
    /// keeps the model's, instead of getting fresh ones.
    public var keepsTargetValues = false

    /// True when `entry`'s value is the target's own (see `keepsTargetValues`): every uncovered
    /// entry but a first convolution the user asked to re-initialise (`--in-channels-mode random`).
    public func keepsTargetValue(_ entry: Entry) -> Bool {
        guard keepsTargetValues, entry.needsInitialValue else { return false }
        if case .reinitialize(.inputConvolution) = entry.action { return false }
        return true
    }

    /// A plan.
    public init(entries: [Entry], unused: [Unused], rules: [TransplantRule], notes: [String] = []) {
        self.entries = entries
        self.unused = unused
        self.rules = rules
        self.notes = notes
    }

    /// Entries copied unchanged.
    public var copied: [Entry] { entries.filter { if case .copy = $0.action { return true } else { return false } } }
    /// Entries adapted from a source tensor.
    public var adapted: [Entry] { entries.filter { if case .adapt = $0.action { return true } else { return false } } }
    /// Entries filled (`num_batches_tracked`).
    public var filled: [Entry] { entries.filter { $0.action == .fill } }
    /// Entries re-initialised, asked for or not.
    public var reinitialized: [Entry] { entries.filter { if case .reinitialize = $0.action { return true } else { return false } } }
    /// Entries with no source key.
    public var missing: [Entry] { entries.filter { $0.action == .missing } }
    /// Entries whose source key has another shape.
    public var mismatched: [Entry] { entries.filter { if case .mismatch = $0.action { return true } else { return false } } }

    /// Entries left uncovered that the user did not ask for: missing, mismatched, and modules
    /// re-initialised whole because part of them did not fit.
    public var unrequested: [Entry] {
        entries.filter { e in
            switch e.action {
            case .missing, .mismatch: return true
            case let .reinitialize(r): return !r.isRequested
            case .copy, .adapt, .fill: return false
            }
        }
    }

    /// True when every target key is taken from the source and every source key is used:
    /// what `load_state_dict(strict=True)` accepts.
    public var isExact: Bool {
        unused.isEmpty && entries.allSatisfy { e in
            if case .copy = e.action { return true }
            return e.action == .fill
        }
    }

    /// Coverage per top-level block, in target order.
    public var coverage: [Coverage] {
        var order: [String] = []
        var table: [String: Coverage] = [:]
        for e in entries {
            let block = MatchPlan.block(of: e.spec.key)
            if table[block] == nil {
                order.append(block)
                table[block] = Coverage(block: block, tensors: 0, coveredTensors: 0, bytes: 0, coveredBytes: 0)
            }
            table[block]?.tensors += 1
            table[block]?.bytes += e.spec.byteCount
            if e.isCovered {
                table[block]?.coveredTensors += 1
                table[block]?.coveredBytes += e.spec.byteCount
            }
        }
        return order.compactMap { table[$0] }
    }

    /// Coverage of every target key that starts with `prefix` (`enc` covers enc1…enc5), by bytes.
    public func coverage(ofPrefix prefix: String) -> Coverage? {
        let chosen = entries.filter { $0.spec.key.hasPrefix(prefix) }
        guard !chosen.isEmpty else { return nil }
        return Coverage(block: prefix, tensors: chosen.count, coveredTensors: chosen.filter(\.isCovered).count,
                        bytes: chosen.reduce(0) { $0 + $1.spec.byteCount },
                        coveredBytes: chosen.filter(\.isCovered).reduce(0) { $0 + $1.spec.byteCount })
    }

    /// The top-level block of a key (`layer1.0.conv1.weight` → `layer1`).
    public static func block(of key: String) -> String {
        key.firstIndex(of: ".").map { String(key[..<$0]) } ?? key
    }
}

/// How the first convolution's weight is adapted to another number of input channels.
///
/// `automatic` is timm's `adapt_input_conv` rule, generalised to any source channel count: to
/// one channel, the sum over the source channels; to more, the source channels repeated
/// cyclically and scaled by source/target so activations keep their scale.
public enum InputChannelMode: String, Sendable, Hashable, CaseIterable {
    /// timm's rule: `sum` to one channel, `repeat` otherwise.
    case automatic = "auto"
    /// Every target channel is the sum over source channels divided by the target count: an input
    /// whose channels are all equal gives what the source gave on such an input.
    case sum
    /// Every target channel is the mean over the source channels.
    case mean
    /// Source channels repeated cyclically, scaled by source/target (timm's rule for C > 1).
    case `repeat`
    /// The first min(source, target) channels copied, the rest zero.
    case zero
    /// The whole convolution re-initialised.
    case random

    /// The rule actually used for `target` channels (`automatic` resolved).
    public func resolved(target: Int) -> InputChannelMode {
        guard self == .automatic else { return self }
        return target == 1 ? .sum : .repeat
    }

    /// `repeat (timm)`.
    public var description: String {
        switch self {
        case .automatic: return "timm adapt_input_conv"
        case .sum: return "sum"
        case .mean: return "mean"
        case .repeat: return "repeat, scaled"
        case .zero: return "zero-padded"
        case .random: return "re-initialised"
        }
    }
}
