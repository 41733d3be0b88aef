/// Errors of surgery planning: a bad rule, a rule that does not fit the source or the target,
/// or files that do not agree with each other. Each is one lower-case line naming the rule,
/// key or file.
public struct SurgeryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: String, Sendable {
        /// A rule's text cannot be parsed (`--map 3-7=enc1`).
        case badRule
        /// A rule names something the source or target does not have.
        case noSuchBlock
        /// Two rules overlap or write one target key.
        case conflict
        /// The source has no tensors where they were looked for.
        case emptySource
        /// Class lists or channel counts that do not match the tensors.
        case mismatch
    }

    /// The kind.
    public var kind: Kind
    /// The message.
    public var message: String

    /// An error of `kind`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
