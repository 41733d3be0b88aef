import CkptTensor

/// The check `torch.load(weights_only=True)` runs on every sparse tensor once the whole file is
/// read (`torch._utils._validate_loaded_sparse_tensors`): a file whose sparse indices break an
/// invariant is refused, as torch refuses it, because reading it would reach outside the tensor.
enum SparseValidation {
    /// Checks every sparse tensor under `root` (a no-op when the pickles rebuilt none).
    /// - Throws: `FormatError(.corrupt)` naming the file, the tensor's path and the broken invariant.
    static func check(_ root: Value, info: FormatInfo, file: String, member: String) throws {
        guard info.sparseTensors > 0 else { return }
        for (path, t) in Checkpoint(root: root, info: info).sparseTensors {
            do {
                try t.validate()
            } catch let e as TensorError {
                let message: String
                if case let .badView(m) = e { message = m } else { message = "\(e)" }
                throw FormatError(.corrupt, file: file, member: member, "sparse tensor '\(path)' (\(t.summary)): \(message) (torch.load refuses it)")
            }
        }
    }
}
