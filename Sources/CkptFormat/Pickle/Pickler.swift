import CkptTensor

/// Writes a checkpoint's object tree as the protocol-2 pickle `torch.save` writes, using only the
/// opcodes and globals `torch.load(weights_only=True)` accepts. Storages are numbered "0", "1", …
/// in order of first reference; each distinct storage is listed once in `storages`.
/// Counterpart: `torch.serialization._save`'s pickler with `persistent_id`.
struct Pickler {
    private(set) var out: [UInt8] = [0x80, 0x02]
    /// Distinct storages in key order.
    private(set) var storages: [Storage] = []
    private var keys: [ObjectIdentifier: String] = [:]
    private var memoized: [ExactKey: Int] = [:]
    /// Paths of containers some `.reference` points back to: memoized when created, so the
    /// reference is a memo GET and torch rebuilds the cycle.
    private var referenced: Set<ExactKey> = []
    let file: String

    init(file: String) { self.file = file }

    /// Notes which containers of `root` are referred back to (call before `value(root, path: "")`).
    mutating func prepare(_ root: Value) {
        Checkpoint.walk(root, path: "") { _, v in
            if case let .reference(to) = v { referenced.insert(ExactKey(to)) }
        }
    }

    /// After a list or dict was created empty at `path`: memoizes it when a reference needs it.
    private mutating func memoizeContainer(_ path: String) {
        guard referenced.contains(ExactKey(path)), memoized[ExactKey("c:" + path)] == nil else { return }
        let i = memoized.count
        memoized[ExactKey("c:" + path)] = i
        if i < 256 { op(.BINPUT); out.append(UInt8(i)) } else { op(.LONG_BINPUT); u32(i) }
    }

    private static func join(_ path: String, _ child: String) -> String { path.isEmpty ? child : path + "." + child }

    private func fail(_ m: String) -> FormatError { FormatError(.unsupported, file: file, member: "data.pkl", m) }

    private mutating func op(_ o: Opcode) { out.append(o.rawValue) }

    private mutating func u32(_ v: Int) {
        for i in 0 ..< 4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    /// Memoizes repeated strings and globals (as torch does), keeping files small.
    private mutating func memo(_ key: String, emit: (inout Pickler) -> Void) {
        if let i = memoized[ExactKey(key)] {
            if i < 256 { op(.BINGET); out.append(UInt8(i)) } else { op(.LONG_BINGET); u32(i) }
            return
        }
        emit(&self)
        let i = memoized.count
        memoized[ExactKey(key)] = i
        if i < 256 { op(.BINPUT); out.append(UInt8(i)) } else { op(.LONG_BINPUT); u32(i) }
    }

    mutating func string(_ s: String) {
        let b = Array(s.utf8)
        op(.BINUNICODE)
        u32(b.count)
        out += b
    }

    private mutating func memoString(_ s: String) {
        memo("s:" + s) { $0.string(s) }
    }

    mutating func global(_ module: String, _ name: String) {
        memo("g:" + module + "." + name) { p in
            p.op(.GLOBAL)
            p.out += Array(module.utf8) + [0x0A] + Array(name.utf8) + [0x0A]
        }
    }

    mutating func int(_ v: Int) {
        if v >= 0, v < 256 {
            op(.BININT1); out.append(UInt8(v))
        } else if v >= 0, v < 65536 {
            op(.BININT2); out.append(UInt8(v & 0xFF)); out.append(UInt8(v >> 8))
        } else if v >= Int(Int32.min), v <= Int(Int32.max) {
            op(.BININT); u32(v)
        } else {
            // LONG1: minimal two's-complement little-endian bytes
            var bytes: [UInt8] = []
            var x = v
            repeat {
                bytes.append(UInt8(truncatingIfNeeded: x))
                x >>= 8
            } while !(x == 0 && bytes.last! & 0x80 == 0) && !(x == -1 && bytes.last! & 0x80 != 0)
            op(.LONG1); out.append(UInt8(bytes.count)); out += bytes
        }
    }

    private mutating func tuple(_ items: [Value], path: String) throws {
        switch items.count {
        case 0: op(.EMPTY_TUPLE)
        case 1: try value(items[0], path: Self.join(path, "0")); op(.TUPLE1)
        case 2: try value(items[0], path: Self.join(path, "0")); try value(items[1], path: Self.join(path, "1")); op(.TUPLE2)
        case 3:
            for (i, v) in items.enumerated() { try value(v, path: Self.join(path, String(i))) }
            op(.TUPLE3)
        default:
            op(.MARK)
            for (i, v) in items.enumerated() { try value(v, path: Self.join(path, String(i))) }
            op(.TUPLE)
        }
    }

    private mutating func intTuple(_ items: [Int]) {
        switch items.count {
        case 0: op(.EMPTY_TUPLE)
        case 1: int(items[0]); op(.TUPLE1)
        case 2: int(items[0]); int(items[1]); op(.TUPLE2)
        case 3: int(items[0]); int(items[1]); int(items[2]); op(.TUPLE3)
        default:
            op(.MARK)
            for i in items { int(i) }
            op(.TUPLE)
        }
    }

    private mutating func emptyOrderedDict() {
        global("collections", "OrderedDict")
        op(.EMPTY_TUPLE)
        op(.REDUCE)
    }

    private mutating func items(_ items: [(key: Value, value: Value)], path: String) throws {
        // batches of 1000, SETITEM for a batch of one, as CPython's pickler does
        var i = 0
        while i < items.count {
            let n = min(1000, items.count - i)
            if n > 1 { op(.MARK) }
            for (k, v) in items[i ..< i + n] {
                try value(k, path: path)
                try value(v, path: path.isEmpty ? k.pathComponent : path + "." + k.pathComponent)
            }
            op(n > 1 ? .SETITEMS : .SETITEM)
            i += n
        }
    }

    /// Appends `v`.
    /// - Throws: `FormatError(.unsupported)` for values a weights_only file cannot hold (inert objects).
    mutating func value(_ v: Value, path: String) throws {
        switch v {
        case .none: op(.NONE)
        case let .bool(b): op(b ? .NEWTRUE : .NEWFALSE)
        case let .int(i): int(i)
        case let .bigInt(s):
            guard let bytes = BigDecimal.twosComplement(decimal: s) else { throw fail("integer \(s.prefix(40)) at '\(path)' cannot be written") }
            op(.LONG1); out.append(UInt8(bytes.count)); out += bytes
        case let .float(d):
            op(.BINFLOAT)
            let bits = d.bitPattern.bigEndian
            withUnsafeBytes(of: bits) { out += $0 }
        case let .complex(re, im):
            global("builtins", "complex")
            try tuple([.float(re), .float(im)], path: path)
            op(.REDUCE)
        case let .string(s): string(s)
        case let .bytes(b):
            // protocol 2 writes bytes as _codecs.encode(latin-1 text, 'latin1')
            global("_codecs", "encode")
            string(String(String.UnicodeScalarView(b.map { Unicode.Scalar($0) })))
            memoString("latin1")
            op(.TUPLE2)
            op(.REDUCE)
        case let .tuple(a): try tuple(a, path: path)
        case let .list(a):
            op(.EMPTY_LIST)
            memoizeContainer(path)
            var i = 0
            while i < a.count {
                let n = min(1000, a.count - i)
                if n > 1 { op(.MARK) }
                for (j, x) in a[i ..< i + n].enumerated() { try value(x, path: Self.join(path, String(i + j))) }
                op(n > 1 ? .APPENDS : .APPEND)
                i += n
            }
        case let .set(a):
            global("builtins", "set")
            try value(.list(a), path: path)
            op(.TUPLE1)
            op(.REDUCE)
        case let .dict(d):
            switch d.kind {
            case .dict: op(.EMPTY_DICT)
            case .orderedDict: emptyOrderedDict()
            case .counter:
                global("collections", "Counter")
                op(.EMPTY_TUPLE)
                op(.REDUCE)
            }
            memoizeContainer(path)
            try items(d.items, path: path)
            if !d.attributes.isEmpty {
                op(.EMPTY_DICT)
                try items(d.attributes.map { (.string($0.name), $0.value) }, path: path)
                op(.BUILD)
            }
        case let .tensor(t): try tensor(t, path: path)
        case let .sparse(t): try asParameter(t.isParameter, requiresGrad: t.requiresGrad) { p in try p.sparseTensor(t, path: path) }
        case let .meta(t):
            // _rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad)
            asParameter(t.isParameter, requiresGrad: t.requiresGrad) { p in
                p.global("torch._utils", "_rebuild_meta_tensor_no_storage")
                p.op(.MARK)
                p.global("torch", t.dtype.rawValue)
                p.intTuple(t.shape)
                p.intTuple(t.strides)
                p.op(t.requiresGrad && !t.isParameter ? .NEWTRUE : .NEWFALSE)
                p.op(.TUPLE)
                p.op(.REDUCE)
            }
        case let .dtype(d):
            global("torch", d.rawValue)
        case let .device(s):
            global("torch", "device")
            string(s)
            op(.TUPLE1)
            op(.REDUCE)
        case let .global(g):
            guard Allowlist.contains(g) else { throw fail("'\(path)' holds \(g), which a weights_only file cannot reference") }
            global(g.module, g.name)
        case let .object(o):
            throw fail("'\(path)' holds an inert \(o.global) object, which a weights_only file cannot hold")
        case .storage:
            throw fail("'\(path)' holds a bare storage, which ckpt does not write")
        case let .reference(to):
            // the container was memoized when it was created (prepare); a tuple cannot be
            guard let i = memoized[ExactKey("c:" + to)] else {
                throw fail("'\(path)' refers back to '\(to)', which is not a list or dict ckpt can memoize")
            }
            if i < 256 { op(.BINGET); out.append(UInt8(i)) } else { op(.LONG_BINGET); u32(i) }
        }
    }

    private mutating func tensor(_ t: Tensor, path: String) throws {
        let id = ObjectIdentifier(t.storage)
        let key: String
        if let k = keys[id] {
            key = k
        } else {
            key = String(storages.count)
            keys[id] = key
            storages.append(t.storage)
        }
        if let q = t.quantization {
            try quantizedTensor(t, q, key: key, path: path)
            return
        }
        guard !t.dtype.isQuantized else { throw fail("'\(path)' is a \(t.dtype.rawValue) tensor without quantization parameters, which torch cannot rebuild") }
        try asParameter(t.isParameter, requiresGrad: t.requiresGrad) { p in try p.plainTensor(t, key: key, path: path) }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())`, or `_v3`
    /// with the dtype for dtypes without a storage class (and views of another dtype's storage).
    private mutating func plainTensor(_ t: Tensor, key: String, path: String) throws {
        let v3 = t.dtype.storageClassName == nil || t.storage.dtype != t.dtype
        global("torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2")
        op(.MARK)
        if v3 {
            storageView(t, key: key, storageClass: ("torch.storage", "UntypedStorage"), count: t.storage.byteCount)
        } else {
            storageView(t, key: key, storageClass: ("torch", t.dtype.storageClassName ?? ""), count: t.storage.elementCount)
        }
        op(t.requiresGrad && !t.isParameter ? .NEWTRUE : .NEWFALSE)
        emptyOrderedDict()
        if v3 { global("torch", t.dtype.rawValue) }
        if t.isConjugated || t.isNegated {
            op(.EMPTY_DICT)
            var meta: [(key: Value, value: Value)] = []
            if t.isConjugated { meta.append((.string("conj"), .bool(true))) }
            if t.isNegated { meta.append((.string("neg"), .bool(true))) }
            try items(meta, path: path)
        }
        op(.TUPLE)
        op(.REDUCE)
    }

    /// What `body` writes, inside `_rebuild_parameter(…, requires_grad, OrderedDict())` when the
    /// value was saved as an `nn.Parameter` (as `Parameter.__reduce_ex__` writes it).
    private mutating func asParameter(_ isParameter: Bool, requiresGrad: Bool, _ body: (inout Pickler) throws -> Void) rethrows {
        if isParameter { global("torch._utils", "_rebuild_parameter") }
        try body(&self)
        if isParameter {
            op(requiresGrad ? .NEWTRUE : .NEWFALSE)
            emptyOrderedDict()
            op(.TUPLE3)
            op(.REDUCE)
        }
    }

    /// The arguments every rebuild function starts with: the persistent id `('storage', cls, key,
    /// 'cpu', count)`, then the storage offset, size and stride.
    private mutating func storageView(_ t: Tensor, key: String, storageClass: (module: String, name: String), count: Int) {
        op(.MARK)
        memoString("storage")
        global(storageClass.module, storageClass.name)
        string(key)
        memoString("cpu")
        int(count)
        op(.TUPLE)
        op(.BINPERSID)
        int(t.storageOffset)
        intTuple(t.shape)
        intTuple(t.strides)
    }

    /// A quantized tensor as torch's `Tensor.__reduce_ex__` writes it: `_rebuild_qtensor(storage,
    /// offset, size, stride, quantizer_params, False, OrderedDict())`, the per-channel scales and
    /// zero points as tensors of their own.
    private mutating func quantizedTensor(_ t: Tensor, _ q: Quantization, key: String, path: String) throws {
        guard let cls = t.dtype.storageClassName, t.storage.dtype == t.dtype else {
            throw fail("'\(path)' is a \(t.dtype.rawValue) tensor over a \(t.storage.dtype.rawValue) storage, which torch cannot rebuild")
        }
        global("torch._utils", "_rebuild_qtensor")
        op(.MARK)
        storageView(t, key: key, storageClass: ("torch", cls), count: t.storage.elementCount)
        switch q {
        case let .perTensor(scale, zeroPoint):
            global("torch", "per_tensor_affine")
            try value(.float(scale), path: path)
            int(zeroPoint)
            op(.TUPLE3)
        case let .perChannel(scales, zeroPoints, axis):
            op(.MARK)
            global("torch", "per_channel_affine")
            try tensor(scales, path: path + ".<scales>")
            try tensor(zeroPoints, path: path + ".<zero_points>")
            int(axis)
            op(.TUPLE)
        }
        op(.NEWFALSE)
        emptyOrderedDict()
        op(.TUPLE)
        op(.REDUCE)
    }

    /// A sparse tensor as torch's `Tensor._reduce_ex_internal` writes it:
    /// `_rebuild_sparse_tensor(_get_layout('torch.sparse_coo'), (indices, values, torch.Size(size),
    /// is_coalesced))`, or `(compressed_indices, plain_indices, values, size)` for the compressed
    /// layouts (a Parameter around it is `asParameter`'s).
    private mutating func sparseTensor(_ t: SparseTensor, path: String) throws {
        global("torch._utils", "_rebuild_sparse_tensor")
        global("torch.serialization", "_get_layout")
        string("torch." + t.layout.rawValue)
        op(.TUPLE1)
        op(.REDUCE)
        op(.MARK)
        let names = t.layout == .coo ? ["<indices>"] : ["<compressed_indices>", "<plain_indices>"]
        for (part, name) in zip(t.parts, names + ["<values>"]) { try tensor(part, path: path + "." + name) }
        global("torch", "Size")
        intTuple(t.size)
        op(.TUPLE1)
        op(.REDUCE)
        if let c = t.isCoalesced { op(c ? .NEWTRUE : .NEWFALSE) }
        op(.TUPLE)
        op(.TUPLE2)
        op(.REDUCE)
    }

    /// Ends the pickle.
    mutating func finish() { op(.STOP) }
}

extension BigDecimal {
    /// Minimal little-endian two's-complement bytes of a decimal integer (≤ 255 bytes), or nil.
    static func twosComplement(decimal s: String) -> [UInt8]? {
        let negative = s.hasPrefix("-")
        let digits = negative ? s.dropFirst() : Substring(s)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        var mag: [UInt8] = [0] // little-endian base 256
        for ch in digits {
            var carry = Int(ch.asciiValue! - 48)
            for i in 0 ..< mag.count {
                let v = Int(mag[i]) * 10 + carry
                mag[i] = UInt8(v & 0xFF)
                carry = v >> 8
            }
            while carry > 0 { mag.append(UInt8(carry & 0xFF)); carry >>= 8 }
        }
        if negative {
            var carry = 1
            for i in 0 ..< mag.count {
                let v = Int(~mag[i]) + carry
                mag[i] = UInt8(v & 0xFF)
                carry = v >> 8
            }
            if mag.last! & 0x80 == 0 { mag.append(0xFF) }
        } else if mag.last! & 0x80 != 0 {
            mag.append(0)
        }
        return mag.count <= 255 ? mag : nil
    }
}
