import CkptTensor

/// What an allowlisted call produced.
enum RebuildResult {
    case value(Value)
    /// `torch.FloatTensor()` (torch 0.x): a tensor whose storage a later BUILD sets.
    case legacyTensor(DType?)
}

/// The allowlisted torch and builtins functions, interpreted as data: each builds a `Value`
/// from its arguments exactly as torch's rebuild function would, with every size checked.
/// Counterparts: `torch._utils._rebuild_tensor*`, `_rebuild_parameter*`,
/// `torch._tensor._rebuild_from_type_v2`, `torch.Size`, `torch.device`, `_codecs.encode`.
enum TorchRebuild {
    static func call(_ g: QualifiedName, construction: OpaqueObject.Construction, args: [Value],
                     context c: Unpickler) throws -> RebuildResult {
        func bad(_ m: String) -> FormatError { c.rebuildError(.corrupt, "\(g): \(m)") }
        switch (g.module, g.name) {
        case ("torch._utils", "_rebuild_tensor"):
            guard args.count == 4 else { throw bad("expected 4 arguments, got \(args.count)") }
            return .value(.tensor(try tensor(args[0], args[1], args[2], args[3], dtype: nil, metadata: nil, g: g, c: c)))
        case ("torch._utils", "_rebuild_tensor_v2"):
            guard args.count == 6 || args.count == 7 else { throw bad("expected 6 or 7 arguments, got \(args.count)") }
            var t = try tensor(args[0], args[1], args[2], args[3], dtype: nil, metadata: args.count == 7 ? args[6] : nil, g: g, c: c)
            t.requiresGrad = args[4].intValue == 1
            return .value(.tensor(t))
        case ("torch._utils", "_rebuild_tensor_v3"):
            guard args.count == 7 || args.count == 8 else { throw bad("expected 7 or 8 arguments, got \(args.count)") }
            guard case let .dtype(d) = args[6] else {
                if case let .global(q) = args[6] { throw c.rebuildError(.unsupported, "\(g): dtype \(q) is not supported") }
                throw bad("argument 7 is a \(args[6].typeName), expected a dtype")
            }
            var t = try tensor(args[0], args[1], args[2], args[3], dtype: d, metadata: args.count == 8 ? args[7] : nil, g: g, c: c)
            t.requiresGrad = args[4].intValue == 1
            return .value(.tensor(t))
        case ("torch._utils", "_rebuild_qtensor"):
            return .value(.tensor(try quantizedTensor(args, g: g, c: c)))
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"):
            let n = g.name == "_rebuild_parameter" ? 3 : 4
            guard args.count == n else { throw bad("expected \(n) arguments, got \(args.count)") }
            if let p = markedDataless(args[0], parameter: true, requiresGrad: args[1].intValue == 1) {
                if n == 4, !isEmptyState(args[3]) { throw c.rebuildError(.unsupported, "\(g): state on a sparse or meta Parameter is not supported") }
                return .value(p)
            }
            guard case var .tensor(t) = args[0] else { throw bad("argument 1 is a \(args[0].typeName), expected a tensor") }
            t.isParameter = true
            t.requiresGrad = args[1].intValue == 1
            // torch applies the state with setattr (`_set_obj_state`): a `data` entry replaces the values
            if n == 4 { t = try applyTensorState(args[3], to: t, g: g, c: c) }
            return .value(.tensor(t))
        case ("torch.nn.parameter", "Parameter"):
            guard args.count == 1 || args.count == 2 else { throw bad("expected 1 or 2 arguments, got \(args.count)") }
            guard case var .tensor(t) = args[0] else { throw bad("argument 1 is a \(args[0].typeName), expected a tensor") }
            t.isParameter = true
            t.requiresGrad = args.count == 2 ? args[1].intValue == 1 : true
            return .value(.tensor(t))
        case ("torch._tensor", "_rebuild_from_type_v2"):
            guard args.count == 4 else { throw bad("expected 4 arguments, got \(args.count)") }
            guard case let .global(fn) = args[0], Allowlist.contains(fn) else { throw bad("argument 1 is not an allowed rebuild function") }
            guard case let .tuple(inner) = args[2] else { throw bad("argument 3 is a \(args[2].typeName), expected a tuple") }
            var r = try call(fn, construction: .call, args: inner, context: c)
            var isParameterClass = false
            if case let .global(cls) = args[1], cls == QualifiedName("torch.nn.parameter", "Parameter") { isParameterClass = true }
            if case var .value(.tensor(t)) = r {
                if isParameterClass { t.isParameter = true }
                r = .value(.tensor(try applyTensorState(args[3], to: t, g: g, c: c)))
            } else if case let .value(v) = r, let p = markedDataless(v, parameter: isParameterClass, requiresGrad: nil) {
                guard isEmptyState(args[3]) else { throw c.rebuildError(.unsupported, "\(g): state on a sparse or meta tensor is not supported") }
                r = .value(p)
            }
            return r
        case ("torch._utils", "_rebuild_meta_tensor_no_storage"):
            guard args.count == 4 else { throw bad("expected 4 arguments, got \(args.count)") }
            guard case let .dtype(d) = args[0] else { throw bad("argument 1 is a \(args[0].typeName), expected a dtype") }
            guard let size = args[1].sequenceValue?.map(\.intValue), let stride = args[2].sequenceValue?.map(\.intValue),
                  !size.contains(nil), !stride.contains(nil) else { throw bad("size and stride must be tuples of integers") }
            do {
                return .value(.meta(try MetaTensor(dtype: d, shape: size.compactMap { $0 }, strides: stride.compactMap { $0 }, requiresGrad: args[3].intValue == 1)))
            } catch let e as TensorError {
                throw c.rebuildError(.corrupt, "\(g): \(e)")
            }
        case ("torch._utils", "_rebuild_sparse_tensor"):
            return .value(.sparse(try sparseTensor(args, g: g, c: c)))
        case ("torch", "Size"):
            guard args.count == 1, let items = args[0].sequenceValue else { throw bad("expected one tuple argument") }
            return .value(.tuple(items))
        case ("torch", "device"):
            guard let first = args.first, case let .string(s) = first, args.count <= 2 else { throw bad("expected a device string") }
            if args.count == 2, let i = args[1].intValue { return .value(.device("\(s):\(i)")) }
            return .value(.device(s))
        case ("builtins", "complex"):
            func num(_ v: Value) -> Double? {
                switch v {
                case let .float(f): return f
                case let .int(i): return Double(i)
                default: return nil
                }
            }
            guard args.count <= 2, let re = args.first.map(num) ?? 0, let im = args.count == 2 ? num(args[1]) : 0 else {
                throw bad("expected up to 2 numbers")
            }
            return .value(.complex(re, im))
        case ("builtins", "bytearray"):
            guard let first = args.first else { return .value(.bytes([])) }
            switch first {
            case let .bytes(b): return .value(.bytes(b))
            case let .int(n):
                guard n >= 0 else { throw c.rebuildError(.limit, "\(g)(\(n)) would allocate \(n) bytes") }
                try c.chargeAllocation(n, what: "\(g)(\(n))")
                return .value(.bytes([UInt8](repeating: 0, count: n)))
            default: throw bad("argument is a \(first.typeName)")
            }
        case ("_codecs", "encode"):
            guard args.count >= 1, case let .string(s) = args[0] else { throw bad("expected a string") }
            var out: [UInt8] = []
            for u in s.unicodeScalars {
                guard u.value < 256 else { throw bad("character outside latin-1") }
                out.append(UInt8(u.value))
            }
            return .value(.bytes(out))
        case ("torch.serialization", "_get_layout"):
            guard args.count == 1, case let .string(s) = args[0] else { throw bad("expected a layout name") }
            return .value(.global(QualifiedName("torch", s.hasPrefix("torch.") ? String(s.dropFirst(6)) : s)))
        case ("torch", "Tensor"):
            if args.isEmpty { return .legacyTensor(nil) }
        default:
            if g.module.hasPrefix("torch"), g.name.hasSuffix("Tensor"), !g.module.contains("sparse"),
               let d = DType(legacyTensorClassName: g.name), args.isEmpty {
                return .legacyTensor(d)
            }
        }
        // allowlisted, but not a tensor ckpt can rebuild (meta, wrapper subclasses, device tensors)
        if g.module == "torch._utils", !c.salvage {
            throw c.rebuildError(.unsupported, "\(g): this kind of tensor (a wrapper subclass or a device-specific one) is not supported; use --salvage to keep it as an inert node")
        }
        c.warn("\(g) kept as an opaque object: ckpt does not rebuild it")
        return .value(.object(OpaqueObject(global: g, construction: construction, arguments: args)))
    }

    /// `_rebuild_sparse_tensor(layout, data)`: COO data is `(indices, values, size[, is_coalesced])`,
    /// compressed data `(compressed_indices, plain_indices, values, size)`. The structure is checked
    /// here; the index values after the whole file is read (`SparseTensor.validate`), as torch does.
    private static func sparseTensor(_ args: [Value], g: QualifiedName, c: Unpickler) throws -> SparseTensor {
        func bad(_ m: String) -> FormatError { c.rebuildError(.corrupt, "\(g): \(m)") }
        guard args.count == 2 else { throw bad("expected 2 arguments, got \(args.count)") }
        guard case let .global(l) = args[0], l.module == "torch", let layout = SparseTensor.Layout(rawValue: l.name) else {
            let what: String
            if case let .global(l) = args[0] { what = l.description } else { what = "a " + args[0].typeName }
            throw c.rebuildError(.unsupported, "\(g): layout \(what) is not a sparse layout torch rebuilds")
        }
        guard let data = args[1].sequenceValue else { throw bad("argument 2 is a \(args[1].typeName), expected a tuple") }
        let expected = layout == .coo ? [3, 4] : [4]
        guard expected.contains(data.count) else { throw bad("\(layout.rawValue) data has \(data.count) items, expected \(expected.map(String.init).joined(separator: " or "))") }
        let tensorCount = layout == .coo ? 2 : 3
        var parts: [Tensor] = []
        for (i, v) in data.prefix(tensorCount).enumerated() {
            guard case let .tensor(t) = v else { throw bad("\(layout.rawValue) data item \(i + 1) is a \(v.typeName), expected a tensor") }
            guard t.quantization == nil else { throw c.rebuildError(.unsupported, "\(g): quantized parts of a sparse tensor are not supported") }
            parts.append(t)
        }
        guard let sizeItems = data[tensorCount].sequenceValue else {
            throw bad("\(layout.rawValue) size is a \(data[tensorCount].typeName), expected a tuple")
        }
        var size: [Int] = []
        for v in sizeItems {
            guard let n = v.intValue else { throw bad("\(layout.rawValue) size holds a \(v.typeName)") }
            size.append(n)
        }
        var coalesced: Bool?
        if layout == .coo, data.count == 4 {
            switch data[3] {
            case let .bool(b): coalesced = b
            case .none: coalesced = nil
            default: throw bad("is_coalesced is a \(data[3].typeName), expected a bool")
            }
        }
        do {
            let indices = Array(parts.dropLast())
            let t = try SparseTensor(layout: layout, size: size, indices: indices, values: parts[parts.count - 1], isCoalesced: coalesced)
            c.noteSparseTensor()
            return t
        } catch let e as TensorError {
            throw c.rebuildError(.corrupt, "\(g): \(e)")
        }
    }

    /// A sparse or meta tensor (a tensor whose data is not one strided storage view) with the
    /// Parameter mark added when `parameter`, and `requires_grad` set when given; nil for any
    /// other value.
    private static func markedDataless(_ v: Value, parameter: Bool, requiresGrad: Bool?) -> Value? {
        switch v {
        case var .sparse(t):
            t.isParameter = t.isParameter || parameter
            if let r = requiresGrad { t.requiresGrad = r }
            return .sparse(t)
        case var .meta(t):
            t.isParameter = t.isParameter || parameter
            if let r = requiresGrad { t.requiresGrad = r }
            return .meta(t)
        default:
            return nil
        }
    }

    private static func isEmptyState(_ state: Value) -> Bool {
        switch state {
        case .none: return true
        case let .dict(d): return d.items.isEmpty
        case let .tuple(parts): return parts.allSatisfy(isEmptyState)
        default: return false
        }
    }

    /// `_rebuild_qtensor(storage, storage_offset, size, stride, quantizer_params, requires_grad,
    /// backward_hooks)`: a view of a quantized storage with `(torch.per_tensor_affine, scale,
    /// zero_point)` or `(torch.per_channel_affine, scales, zero_points, axis)` (torch writes the
    /// float-qparams scheme under the per-channel name; its zero points are floating).
    private static func quantizedTensor(_ args: [Value], g: QualifiedName, c: Unpickler) throws -> Tensor {
        func bad(_ m: String) -> FormatError { c.rebuildError(.corrupt, "\(g): \(m)") }
        guard args.count == 7 else { throw bad("expected 7 arguments, got \(args.count)") }
        guard case let .storage(storage) = args[0], storage.dtype.isQuantized else {
            throw bad("argument 1 is a \(args[0].typeName) that is not a quantized storage")
        }
        guard let params = args[4].sequenceValue, let first = params.first, case let .global(scheme) = first else {
            throw bad("quantizer parameters are a \(args[4].typeName), expected a tuple starting with a qscheme")
        }
        func number(_ v: Value) -> Double? {
            switch v {
            case let .float(f): return f
            case let .int(i): return Double(i)
            default: return nil
            }
        }
        let q: Quantization
        switch (scheme.module, scheme.name, params.count) {
        case ("torch", "per_tensor_affine", 3):
            guard let scale = number(params[1]), case let .int(zeroPoint) = params[2] else {
                throw bad("per-tensor parameters are (\(params[1].typeName), \(params[2].typeName)), expected (float, int)")
            }
            q = .perTensor(scale: scale, zeroPoint: zeroPoint)
        case ("torch", "per_channel_affine", 4), ("torch", "per_channel_affine_float_qparams", 4):
            guard case let .tensor(scales) = params[1], case let .tensor(zeroPoints) = params[2], case let .int(axis) = params[3] else {
                throw bad("per-channel parameters are (\(params[1].typeName), \(params[2].typeName), \(params[3].typeName)), expected (tensor, tensor, int)")
            }
            q = .perChannel(scales: scales, zeroPoints: zeroPoints, axis: axis)
        default:
            throw c.rebuildError(.unsupported, "\(g): quantization scheme \(scheme) with \(params.count - 1) parameters is not one torch can rebuild")
        }
        guard args[5].intValue != 1 else {
            // torch sets requires_grad on the rebuilt tensor, which fails for a quantized one
            throw c.rebuildError(.unsupported, "\(g): a quantized tensor that requires grad (torch fails to load it)")
        }
        var t = try tensor(args[0], args[1], args[2], args[3], dtype: storage.dtype, metadata: nil, g: g, c: c)
        do {
            try q.validate(shape: t.shape)
        } catch let e as TensorError {
            throw c.rebuildError(.unsupported, "\(g): \(e)")
        }
        t.quantization = q
        return t
    }

    /// A rebuilt tensor after torch's `_set_obj_state(t, state)`: `state` is None, a dict, or a
    /// `(dict, slots)` tuple applied with `setattr` in order. `data` replaces the values (a tensor
    /// of the same kind, as torch's setter requires), `requires_grad` sets the flag; other
    /// attributes (Python extras on a subclass, `grad`) change nothing ckpt reports. Anything torch
    /// would fail on is refused.
    static func applyTensorState(_ state: Value, to tensor: Tensor, g: QualifiedName, c: Unpickler) throws -> Tensor {
        var dicts: [PyDict] = []
        switch state {
        case .none: return tensor
        case let .dict(d): dicts = [d]
        case let .tuple(parts) where parts.count == 2:
            for p in parts {
                switch p {
                case let .dict(d): dicts.append(d)
                case .none: break
                default: throw c.rebuildError(.unsupported, "\(g): tensor state holds a \(p.typeName), which torch would fail to apply")
                }
            }
        default:
            throw c.rebuildError(.unsupported, "\(g): tensor state is a \(state.typeName), which torch would fail to apply")
        }
        var t = tensor
        for d in dicts {
            for (k, v) in d.items {
                guard let name = k.stringValue else { throw c.rebuildError(.corrupt, "\(g): tensor state key is a \(k.typeName)") }
                switch name {
                case "data":
                    guard case var .tensor(data) = v else {
                        throw c.rebuildError(.unsupported, "\(g): tensor state sets 'data' to a \(v.typeName) (torch fails)")
                    }
                    if t.requiresGrad && !(data.dtype.isFloatingPoint || data.dtype.isComplex) {
                        throw c.rebuildError(.unsupported, "\(g): tensor state sets 'data' to \(data.dtype.rawValue) on a tensor that requires grad (torch fails: must be floating point or complex)")
                    }
                    data.isParameter = t.isParameter
                    data.requiresGrad = t.requiresGrad
                    t = data
                case "requires_grad":
                    switch v {
                    case let .bool(b): t.requiresGrad = b
                    default: throw c.rebuildError(.unsupported, "\(g): tensor state sets 'requires_grad' to a \(v.typeName)")
                    }
                case "real", "imag", "_base", "_cdata", "__dict__", "shape", "dtype", "device":
                    throw c.rebuildError(.unsupported, "\(g): tensor state sets '\(name)', which ckpt does not apply")
                default:
                    continue
                }
            }
        }
        return t
    }

    /// `tensor.set_(storage, offset, size, stride)` from a BUILD state (torch 0.x files).
    static func setState(dtype: DType?, state: Value, context c: Unpickler) throws -> Tensor {
        guard case let .tuple(items) = state, items.count == 4 else {
            throw c.rebuildError(.corrupt, "tensor state is a \(state.typeName), expected (storage, offset, size, stride)")
        }
        return try tensor(items[0], items[1], items[2], items[3], dtype: dtype, metadata: nil,
                          g: QualifiedName("torch", "Tensor"), c: c)
    }

    private static func ints(_ v: Value, _ what: String, _ g: QualifiedName, _ c: Unpickler) throws -> [Int] {
        guard let items = v.sequenceValue else {
            throw c.rebuildError(.corrupt, "\(g): \(what) is a \(v.typeName), expected a tuple of ints")
        }
        guard items.count <= 64 else { throw c.rebuildError(.limit, "\(g): \(what) has \(items.count) dimensions") }
        return c.interned(try items.map {
            switch $0 {
            case let .int(i): return i
            case .bigInt: throw c.rebuildError(.corrupt, "\(g): \(what) holds an integer beyond 64 bits")
            default: throw c.rebuildError(.corrupt, "\(g): \(what) holds a \($0.typeName), expected ints")
            }
        })
    }

    private static func tensor(_ storageValue: Value, _ offsetValue: Value, _ sizeValue: Value, _ strideValue: Value,
                               dtype: DType?, metadata: Value?, g: QualifiedName, c: Unpickler) throws -> Tensor {
        guard case let .storage(storage) = storageValue else {
            throw c.rebuildError(.corrupt, "\(g): argument 1 is a \(storageValue.typeName), expected a storage")
        }
        guard case let .int(offset) = offsetValue else {
            throw c.rebuildError(.corrupt, "\(g): storage offset is a \(offsetValue.typeName), expected an int")
        }
        let shape = try ints(sizeValue, "size", g, c)
        let strides = try ints(strideValue, "stride", g, c)
        var conj = false, neg = false
        if let m = metadata?.dictValue {
            conj = m["conj"]?.intValue == 1
            neg = m["neg"]?.intValue == 1
        }
        let d = dtype ?? storage.dtype
        if d.isQuantized && g.name != "_rebuild_qtensor" {
            throw c.rebuildError(.unsupported, "\(g): a \(d.rawValue) tensor outside _rebuild_qtensor has no quantization parameters (torch fails to build it)")
        }
        if storage.dtype != d && storage.dtype != .uint8 && storage.byteCount > 0 {
            throw c.rebuildError(.corrupt, "\(g): storage \(storage.key) holds \(storage.dtype.rawValue), tensor wants \(d.rawValue)")
        }
        do {
            return try Tensor(storage: storage, dtype: d, shape: shape, strides: strides, storageOffset: offset,
                              isConjugated: conj, isNegated: neg)
        } catch let e as TensorError {
            throw c.rebuildError(.corrupt, "\(g): \(e)")
        }
    }
}
