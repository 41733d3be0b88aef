/// Errors raised by the numeric kernels: an operand whose shape does not fit the operation.
///
/// Messages are lower-case and say what, where, expected and got.
public enum KernelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An operand of `operation` has the wrong shape.
    case shapeMismatch(operation: String, operand: String, expected: String, got: [Int])
    /// A hyper-parameter (stride, padding, groups…) cannot describe a valid operation.
    case invalidArgument(operation: String, message: String)

    /// One line naming the operation, the operand, what was expected and what was got.
    public var description: String {
        switch self {
        case let .shapeMismatch(operation, operand, expected, got):
            return "\(operation): \(operand) has shape \(got), expected \(expected)"
        case let .invalidArgument(operation, message):
            return "\(operation): \(message)"
        }
    }
}
