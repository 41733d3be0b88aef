import CkptTensor

/// The dtype of the tensors a transplant writes (`--dtype`).
public enum OutputDType: String, Sendable, CaseIterable {
    /// Copied tensors keep their dtype; new and adapted ones take the source's floating dtype.
    case keep
    case float32, float16, bfloat16

    /// The dtype floating tensors get, `nil` for `keep`.
    public var dtype: DType? {
        switch self {
        case .keep: return nil
        case .float32: return .float32
        case .float16: return .float16
        case .bfloat16: return .bfloat16
        }
    }
}

/// A floating tensor written in another dtype than the source gave.
public struct CastReport: Sendable, Hashable {
    /// The target key.
    public var key: String
    /// dtype it had.
    public var from: DType
    /// dtype it is written in.
    public var to: DType
    /// Largest |written − original| over its elements (0 for a widening cast).
    public var maxAbsError: Double
    /// True when some value changed.
    public var isLossy: Bool { maxAbsError > 0 || maxAbsError.isNaN }
}

extension MatchPlan {
    /// The target's state dict: every target key in order, copied tensors referencing the source's
    /// storage (no copy), adapted ones computed, the rest from `initialValues`, cast as `dtype` says.
    ///
    /// `initialValues` must hold a tensor for every entry whose `needsInitialValue` is true, unless
    /// `takenOnly` is set: then only the tensors taken from the source without fresh values are
    /// returned (what the activation proof needs, before any fresh value is made).
    /// Tensors are written as `state_dict()` gives them: plain tensors, never `nn.Parameter`s.
    /// - Throws: `SurgeryError.mismatch` for a missing initial value, `TensorError` when a source
    ///   tensor cannot be read.
    public func apply(source: StateDict, initialValues: [String: Tensor], dtype: OutputDType, takenOnly: Bool = false) throws
        -> (stateDict: StateDict, casts: [CastReport]) {
        var out = StateDict()
        var casts: [CastReport] = []
        let floating = source.map(\.tensor.dtype).filter(\.isFloatingPoint)
        let newDType = dtype.dtype ?? Dictionary(grouping: floating, by: { $0 }).max { $0.value.count < $1.value.count }?.key ?? .float32
        func initial(_ key: String) throws -> Tensor {
            guard let t = initialValues[key] else { throw SurgeryError(.mismatch, "no initial value for \(key)") }
            return t
        }
        func sourceTensor(_ key: String) throws -> Tensor {
            guard let t = source[key] else { throw SurgeryError(.mismatch, "source key \(key) vanished") }
            return t
        }
        for e in entries where !takenOnly || (e.isCovered && !e.needsInitialValue) {
            var t: Tensor
            var target: DType? = dtype.dtype
            switch e.action {
            case let .copy(from):
                t = try sourceTensor(from)
            case let .adapt(from, adaptation):
                let s = try sourceTensor(from)
                let values: [Float]
                switch adaptation {
                case let .inputChannels(_, to, mode):
                    values = try InputConvolution.adapt(try s.floats(), shape: s.shape, to: to, mode: mode)
                case let .keepClasses(rows):
                    values = try MatchPlan.keepRows(rows, source: try s.floats(), fresh: try initial(e.spec.key).floats(),
                                                    rowSize: e.spec.shape.dropFirst().reduce(1, *))
                }
                t = try Tensor(float32: values, shape: e.spec.shape)
                target = target ?? (s.dtype.isFloatingPoint ? s.dtype : newDType)
            case .fill:
                t = try Tensor(dtype: e.spec.dtype, shape: e.spec.shape, bytes: [UInt8](repeating: 0, count: e.spec.byteCount))
            case .reinitialize, .missing, .mismatch:
                t = try initial(e.spec.key)
                target = target ?? (t.dtype.isFloatingPoint ? newDType : nil)
            }
            if let to = target, t.dtype.isFloatingPoint, t.dtype != to {
                let (cast, error) = try MatchPlan.cast(t, to: to)
                if e.isCovered { casts.append(CastReport(key: e.spec.key, from: t.dtype, to: to, maxAbsError: error)) }
                t = cast
            }
            t.isParameter = false
            t.requiresGrad = false
            out[e.spec.key] = t
        }
        return (out, casts)
    }

    /// Rows of a head: row `j` from the source's row `rows[j]` when kept, else from `fresh`.
    static func keepRows(_ rows: [Int?], source: [Float], fresh: [Float], rowSize: Int) throws -> [Float] {
        guard fresh.count == rows.count * rowSize else {
            throw SurgeryError(.mismatch, "keep-classes: \(rows.count) rows of \(rowSize) do not fit \(fresh.count) values")
        }
        var out = fresh
        for (j, i) in rows.enumerated() {
            guard let i else { continue }
            guard (i + 1) * rowSize <= source.count else { throw SurgeryError(.mismatch, "keep-classes: source row \(i) out of range") }
            out.replaceSubrange(j * rowSize ..< (j + 1) * rowSize, with: source[i * rowSize ..< (i + 1) * rowSize])
        }
        return out
    }

    /// `t` as a contiguous tensor of `dtype`, rounded as torch's `.half()` / `.bfloat16()` /
    /// `.float()` round, and the largest absolute change.
    /// - Throws: `TensorError` when `t` cannot be read.
    public static func cast(_ t: Tensor, to dtype: DType) throws -> (Tensor, Double) {
        let original = try t.doubles()
        var bytes = [UInt8](repeating: 0, count: original.count * dtype.itemSize)
        var worst = 0.0
        bytes.withUnsafeMutableBytes { raw in
            for (i, d) in original.enumerated() {
                let f = Float(d)
                let back: Double
                switch dtype {
                case .float64:
                    raw.storeBytes(of: d, toByteOffset: i * 8, as: Double.self)
                    back = d
                case .float16:
                    let h = HalfFloat.halfBits(from: f)
                    raw.storeBytes(of: h, toByteOffset: i * 2, as: UInt16.self)
                    back = Double(HalfFloat.float(fromHalfBits: h))
                case .bfloat16:
                    let b = HalfFloat.bfloat16Bits(from: f)
                    raw.storeBytes(of: b, toByteOffset: i * 2, as: UInt16.self)
                    back = Double(HalfFloat.float(fromBFloat16Bits: b))
                default:
                    raw.storeBytes(of: f, toByteOffset: i * 4, as: Float.self)
                    back = Double(f)
                }
                if d.isFinite || back.isFinite {
                    let e = abs(back - d)
                    if e > worst || e.isNaN { worst = e.isNaN ? .infinity : e }
                }
            }
        }
        return (try Tensor(dtype: dtype, shape: t.shape, bytes: bytes), worst)
    }
}
