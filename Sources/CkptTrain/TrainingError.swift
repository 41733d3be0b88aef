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
    /// A fine-tuning option out of range or in conflict with another (`--lr`, `--stage1-epochs`).
    case invalidOption(option: String, message: String)
    /// The data's classes do not number `--num-classes`.
    case classCount(data: String, classes: [String], numClasses: Int)
    /// The weights do not fit the model beyond its head: one line per kind of problem.
    case weightsDoNotFit(model: String, problems: [String])
    /// A loaded tensor is not bit for bit the source tensor it was taken from.
    case sourceMismatch(key: String, source: String)
    /// A tensor that does not train changed during `epoch` (from 1).
    case frozenTensorChanged(key: String, epoch: Int)
    /// Training stopped in `epoch` (from 1) at `batch` (from 1), global optimizer step `step`,
    /// because of `reason` (a loss or gradient that is not finite); no weight of that step changed.
    case stopped(epoch: Int, batch: Int, step: Int, reason: String)
    /// A training checkpoint that cannot be resumed here, and why.
    case resume(message: String)
    /// A model or dataset fine-tuning does not handle yet.
    case unsupported(message: String)
    /// A class list (`source`: a labels file or a data folder) whose length is not the head's
    /// class count.
    case labelCount(source: String, labels: Int, numClasses: Int)
    /// The model's output for `image` holds NaN or infinity (weights that are not finite).
    case nonFiniteOutput(image: String)

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
        case let .invalidOption(option, message):
            return "\(option): \(message)"
        case let .classCount(data, classes, n):
            let shown = classes.prefix(8).joined(separator: ", ") + (classes.count > 8 ? ", …" : "")
            return "\(data): \(classes.count) class folder\(classes.count == 1 ? "" : "s") (\(shown)), --num-classes is \(n)"
        case let .weightsDoNotFit(model, problems):
            return "the weights do not fit \(model): " + problems.joined(separator: "; ")
        case let .sourceMismatch(key, source):
            return "\(key): the loaded tensor differs from its source \(source); refusing to train (--no-verify skips the check)"
        case let .frozenTensorChanged(key, epoch):
            return "epoch \(epoch): frozen tensor \(key) changed; it must stay bit for bit as it started"
        case let .stopped(epoch, batch, step, reason):
            return "epoch \(epoch), batch \(batch) (step \(step)): \(reason)"
        case let .resume(message):
            return "--resume: \(message)"
        case let .unsupported(message):
            return message
        case let .labelCount(source, labels, numClasses):
            return "\(source): \(labels) label\(labels == 1 ? "" : "s") for a head of \(numClasses) class\(numClasses == 1 ? "" : "es"); give one label per class, in class-index order"
        case let .nonFiniteOutput(image):
            return "\(image): the model's output is not finite (NaN or infinity; are the weights finite?)"
        }
    }
}
