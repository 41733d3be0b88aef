import CkptTensor

/// Errors of the training engine: a bad freeze or group spec, a step whose loss is not finite,
/// a model with nothing to train.
public enum TrainingError: Error, Sendable, CustomStringConvertible {
    /// `name` in a freeze, train or group spec names no module or parameter; `closeMatches` are
    /// names that do (a typo, or `layer` for `layer1…layer4`).
    case unknownName(name: String, option: String, closeMatches: [String])
    /// The loss of step `step` (from 1) was NaN or infinite; no weight changed.
    case nonFiniteLoss(step: Int, value: Float)
    /// A gradient of step `step` held NaN or infinity at `key`; no weight changed.
    case nonFiniteGradient(step: Int, key: String)
    /// The selection leaves no parameter trainable.
    case nothingTrains(option: String)
    /// Targets do not match the model's output (`expected` labels, `got`).
    case targetCount(expected: Int, got: Int)

    /// One lower-case line naming what, where, expected and got.
    public var description: String {
        switch self {
        case let .unknownName(name, option, matches):
            let hint = matches.isEmpty ? "" : "; did you mean \(matches.prefix(6).joined(separator: ", "))\(matches.count > 6 ? ", …" : "")?"
            return "\(option): no module or parameter named '\(name)'\(hint)"
        case let .nonFiniteLoss(step, value):
            return "step \(step): the loss is \(value) (not finite); stopped before changing any weight (lower the learning rate?)"
        case let .nonFiniteGradient(step, key):
            return "step \(step): the gradient of \(key) is not finite; stopped before changing any weight"
        case let .nothingTrains(option):
            return "\(option): no parameter is left to train"
        case let .targetCount(expected, got):
            return "targets: expected \(expected) labels for the model's output, got \(got)"
        }
    }
}
