import CkptKernels

/// Errors raised by modules: a load that the caller's strictness rejects, a kernel failure inside
/// a named layer, a missing capture target, or inputs that do not fit.
public enum NNError: Error, Sendable, CustomStringConvertible {
    /// The state dict does not fit the model under the requested strictness; the report says why.
    case load(LoadReport)
    /// A kernel failed inside the module at `path` (`features.0`), of type `type` (`Conv2d`).
    case layer(path: String, type: String, underlying: KernelError)
    /// `--layer NAME` named no module the forward pass ran.
    case unknownLayer(name: String, available: [String])
    /// The model takes `expected` inputs (named), and got `got`.
    case inputCount(expected: [String], got: Int)
    /// Input `name` holds NaN or infinity at flat index `index`.
    case nonFiniteInput(name: String, index: Int)
    /// Input `name` has a shape the model cannot take.
    case inputShape(name: String, expected: String, got: [Int])
    /// The inputs file holds no tensor named `name`; `available` lists what it holds.
    case missingInput(name: String, available: [String])
    /// A backward at `path` found the tape out of step with the forward (a module whose backward
    /// does not mirror its forward): an internal error, never a user's.
    case backwardOrder(path: String, expected: String, found: String)
    /// Module type `type` at `path` has no backward pass.
    case noBackward(path: String, type: String)

    /// One lower-case line naming what, where, expected and got.
    public var description: String {
        switch self {
        case let .load(report):
            return "state dict does not fit the model: " + report.problemSummary
        case let .layer(path, type, underlying):
            return "\(path.isEmpty ? "<model>" : path) (\(type)): \(underlying)"
        case let .unknownLayer(name, available):
            let some = available.prefix(12).joined(separator: ", ")
            return "no layer named '\(name)'; layers include \(some)\(available.count > 12 ? ", …" : "")"
        case let .inputCount(expected, got):
            return "model takes \(expected.count) input(s) (\(expected.joined(separator: ", "))), got \(got)"
        case let .nonFiniteInput(name, index):
            return "input \(name) holds a non-finite value at element \(index)"
        case let .inputShape(name, expected, got):
            return "input \(name) has shape \(got), expected \(expected)"
        case let .backwardOrder(path, expected, found):
            return "\(path.isEmpty ? "<model>" : path): backward expected the tape entry of \(expected), found \(found) (internal error)"
        case let .noBackward(path, type):
            return "\(path.isEmpty ? "<model>" : path) (\(type)): this module cannot be trained (no backward pass)"
        case let .missingInput(name, available):
            return "inputs hold no tensor named '\(name)' (found: \(available.isEmpty ? "none" : available.joined(separator: ", ")))"
        }
    }
}
