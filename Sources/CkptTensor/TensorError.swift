/// Errors raised by tensor values: bad geometry, storage size mismatches, I/O on mapped files.
public enum TensorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A file could not be opened or mapped.
    case io(path: String, message: String)
    /// A storage loader returned a different byte count from the declared one.
    case storageSize(key: String, expected: Int, got: Int)
    /// Shape, strides or offset that do not describe a valid view of the storage.
    case badView(String)
    /// A size or element count overflowed 64 bits.
    case overflow(String)
    /// The dtype cannot be turned into numbers, or cast as asked.
    case unsupportedDType(DType, String)
    /// Materialising the tensor would take more memory than ckpt allows for a view.
    case tooLarge(String)

    public var description: String {
        switch self {
        case let .io(path, message): return "\(path): \(message)"
        case let .storageSize(key, expected, got):
            return "storage \(key): record holds \(got) bytes, expected \(expected)"
        case let .badView(m): return "bad tensor view: \(m)"
        case let .overflow(m): return "size overflow: \(m)"
        case let .unsupportedDType(d, m): return "dtype \(d.rawValue): \(m)"
        case let .tooLarge(m): return "tensor too large: \(m)"
        }
    }
}

/// Checked arithmetic helpers used wherever sizes come from a file.
public enum Checked {
    /// `a * b`, or nil on overflow.
    @inlinable public static func mul(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        return o ? nil : r
    }
    /// `a + b`, or nil on overflow.
    @inlinable public static func add(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.addingReportingOverflow(b)
        return o ? nil : r
    }
    /// Product of `dims`, or nil on overflow or a negative factor.
    @inlinable public static func product(_ dims: [Int]) -> Int? {
        var p = 1
        for d in dims {
            guard d >= 0, let q = mul(p, d) else { return nil }
            p = q
        }
        return p
    }
}
