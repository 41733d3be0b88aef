/// Every failure of an optimizer or a learning-rate schedule: what went wrong and where.
///
/// Printed as one lower-case line, `where: message`, e.g.
/// `sgd group 1: learning rate must be positive and finite, got -0.1` or
/// `optimizer state dict: param_groups[0]: holds 3 parameters, the optimizer's group 0 holds 2`.
public struct OptimizerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The class of failure.
    public enum Kind: String, Sendable {
        /// A hyper-parameter outside the range torch accepts (a negative learning rate, betas ≥ 1,
        /// nesterov without momentum), at construction, at a step, or in a loaded state dict.
        case invalidHyperParameter
        /// A parameter group the optimizer cannot use (empty, or a parameter in two groups).
        case invalidGroup
        /// A state dict that does not fit the optimizer or schedule: other group or parameter
        /// counts, other shapes, a parameter index no group names.
        case stateMismatch
        /// A state dict that is not laid out as torch lays one out (a missing key, a wrong type).
        case malformedState
        /// A torch option ckpt does not implement (`amsgrad=True`, `maximize=True`).
        case unsupported
    }

    /// The class of failure.
    public var kind: Kind
    /// Where it happened: `sgd group 1`, `optimizer state dict: state[3]`, `StepLR`.
    public var context: String
    /// Lower-case message saying what, expected and got.
    public var message: String

    /// An error of `kind` at `context`.
    public init(_ kind: Kind, _ context: String, _ message: String) {
        self.kind = kind
        self.context = context
        self.message = message
    }

    /// `context: message`.
    public var description: String { context + ": " + message }
}
