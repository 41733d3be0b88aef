import CkptTensor

/// How strictly the unpickler treats globals outside the allowlist, and its safety budgets.
public struct UnpickleOptions: Sendable {
    /// Keep globals outside the allowlist as inert opaque nodes instead of refusing the file.
    /// Nothing is ever imported or called in either mode.
    public var salvage: Bool = false
    /// Most objects one pickle may create.
    public var maxObjects: Int = 20_000_000
    /// Deepest container nesting accepted when the object tree is built.
    public var maxDepth: Int = 200
    /// Most values the object tree may expand to, summed over the whole pickle (shared
    /// references count each time they appear), for a pickle of up to `maxExpandedValues /
    /// expandedValuesPerPickleByte` bytes; a larger pickle may expand to
    /// `expandedValuesPerPickleByte` values per byte read, so every file torch writes is read
    /// (a state dict takes about a dozen values and 110 bytes of pickle per tensor: 300,000
    /// tensors pass 3,000,000 values) while a small pickle that expands hugely through shared
    /// references is still refused. A pickle with no shared reference never expands to more
    /// values than it has bytes.
    public var maxExpandedValues: Int = 3_000_000
    /// Values a pickle may expand to per byte of it read so far, once that is more than
    /// `maxExpandedValues`.
    public var expandedValuesPerPickleByte: Int = 1
    /// Globals outside the allowlist accepted in this pickle as inert objects (never called, their
    /// arguments and BUILD state kept as data), for readers of one known pickle such as a DCP
    /// `.metadata`; everything else outside the allowlist is still refused.
    public var inertGlobals: Set<QualifiedName> = []
    /// Most bytes one `bytearray(n)` call may allocate (torch's allowlist includes it).
    public var maxAllocationPerCall: Int = 1 << 20
    /// Most bytes the pickle's `bytearray(n)` calls may allocate together (a cap per call alone
    /// would let many small calls ask for gigabytes).
    public var maxAllocatedBytes: Int = 64 << 20
    /// Largest deflated zip record read into memory (torch.save never compresses; TorchScript
    /// archives deflate their small `code/` files).
    public var maxInflatedRecordSize: Int = 1 << 30

    /// Default options: refuse anything outside the allowlist.
    public init(salvage: Bool = false) { self.salvage = salvage }
}

/// A restricted pickle interpreter: it runs the opcodes of protocols 0–5 itself over an arena
/// of inert objects and accepts as callable only the allowlisted globals that rebuild tensors and
/// containers. Nothing is ever imported, resolved or called.
///
/// Counterpart: torch's `_weights_only_unpickler.Unpickler`. Memo entries are references (arena
/// indices), as in CPython, so containers filled after being memoized are seen filled.
final class Unpickler {
    /// Maps a persistent id (`('storage', cls, key, location, numel)`) to a `.storage` value.
    typealias PersistentLoad = (Value) throws -> Value

    /// One arena slot: 16 bytes (a payload of one word and a tag), so a pickle of a million
    /// objects costs 16 MB of arena; dicts, objects and globals, larger than a word, live in side
    /// tables (`dicts`, `objects`, `globalNames`) and the node holds their index.
    private enum Node {
        case value(Value)
        /// An int or a bool kept unboxed (a `Value` payload is a heap box): a state dict has
        /// several per tensor (sizes, strides, offsets, numel, requires_grad).
        case int(Int)
        case bool(Bool)
        /// `count` items from `start` in `tupleItems` (a tuple never changes: no array of its own).
        case tuple(start: Int32, count: Int32)
        case list([Int])
        case set([Int])
        /// Index in `dicts`.
        case dict(Int)
        /// A dict nothing was put in yet: no `DictNode` until the first item or attribute (a
        /// state dict has an empty `OrderedDict()` of backward hooks per tensor).
        case emptyDict(DictKind)
        /// Index in `globalNames`.
        case global(Int)
        /// Index in `objects`.
        case object(Int)
        /// `torch.FloatTensor()` waiting for the BUILD that sets its storage (torch 0.x).
        case legacyTensor(DType?)
        /// A Python 2 `str` that is not ASCII: decoded when the tree is built, as UTF-8 unless some
        /// Python 2 str of the file is not UTF-8 (then every one as Latin-1, as torch reads such a
        /// file only with `encoding='latin1'`).
        case py2Text([UInt8])
    }

    /// A dict key as Python compares it: strings by their code points (not Swift's canonical
    /// equivalence), and `1`, `1.0` and `True` as one key.
    private enum KeyID: Hashable {
        case string(ExactKey)
        case py2(ExactKey)
        case int(Int)
        case float(UInt64)
        case node(Int)
        case bytes([UInt8])
    }

    private struct DictNode {
        var items: [(key: Int, value: Int)] = []
        /// Open-addressing table of positions in `items` by key (-1: empty), at most half full:
        /// 4 bytes a slot where a `[KeyID: Int]` takes 32 (a state dict of 300,000 keys).
        var slots: [Int32] = []
        var kind: DictKind
        var attributes: [(name: String, value: Int)] = []
    }

    private struct ObjectNode {
        var global: QualifiedName
        var construction: OpaqueObject.Construction
        var arguments: [Int]
        var state: Int?
    }

    let file: String
    let member: String
    /// Offset of the pickle's first byte in `member` (non-zero for pickles inside a stream).
    let baseOffset: Int
    private let bytes: UnsafeRawBufferPointer
    private let options: UnpickleOptions
    private let persistentLoad: PersistentLoad?

    private var nodes: [Node] = []
    /// The items of every tuple, one after another (node indices).
    private var tupleItems: [Int32] = []
    private var dicts: [DictNode] = []
    private var objects: [ObjectNode] = []
    /// Each global once (a state dict names `_rebuild_tensor_v2` once per tensor).
    private var globalNames: [QualifiedName] = []
    private var globalIndex: [QualifiedName: Int] = [:]
    private var stack: [Int] = []
    private var marks: [Int] = []
    /// The memo, as CPython's (index → object): indices as torch writes them (0, 1, 2, ...) in
    /// an array, 4 bytes each; an index far past the array's end in a dictionary.
    private var memoDense: [Int32] = []
    private var memoSparse: [Int: Int] = [:]
    /// Entries in the memo (`len(memo)`, what MEMOIZE uses as the next index).
    private var memoCount = 0
    private var pos = 0
    private var opStart = 0

    /// Byte offset just past STOP once `run` returned.
    private(set) var endOffset = 0
    /// Highest PROTO seen (0 when none).
    private(set) var proto = 0
    /// Every GLOBAL referenced, first-seen order.
    private(set) var globals: [QualifiedName] = []
    /// Globals outside the allowlist (only non-empty under salvage).
    private(set) var disallowed: [QualifiedName] = []
    /// Opcodes used that torch's weights_only loader rejects.
    private(set) var rejectedOpcodes: [String] = []
    /// Notes about constructs kept inert (quantized tensors and the like).
    private(set) var warnings: [String] = []

    init(bytes: UnsafeRawBufferPointer, file: String, member: String, baseOffset: Int = 0,
         options: UnpickleOptions, persistentLoad: PersistentLoad?) {
        self.bytes = bytes
        self.file = file
        self.member = member
        self.baseOffset = baseOffset
        self.options = options
        self.persistentLoad = persistentLoad
    }

    // MARK: errors

    private func fail(_ kind: FormatError.Kind, _ message: String, at offset: Int? = nil) -> FormatError {
        FormatError(kind, file: file, member: member, offset: baseOffset + (offset ?? opStart), message)
    }

    // MARK: reading

    private func need(_ n: Int) throws {
        guard n >= 0, n <= bytes.count - pos else {
            throw fail(.truncated, "pickle ends inside an argument (needs \(n) bytes, \(bytes.count - pos) left)")
        }
        try checkFrame(pos + n)
    }

    /// End of the current FRAME (protocol 4), 0 when none: Python's unframer fails a read that
    /// starts inside a frame and runs past its end ("pickle exhausted before end of frame").
    private var frameEnd = 0

    private func checkFrame(_ end: Int) throws {
        if pos < frameEnd, end > frameEnd {
            throw fail(.corrupt, "an argument runs past the end of its FRAME (Python's unpickler stops there: pickle exhausted before end of frame)")
        }
    }

    private func u8() throws -> UInt8 {
        try need(1)
        defer { pos += 1 }
        return bytes[pos]
    }

    private func le<T: FixedWidthInteger>(_: T.Type) throws -> T {
        try need(MemoryLayout<T>.size)
        var v: T = 0
        for i in 0 ..< MemoryLayout<T>.size { v |= T(truncatingIfNeeded: bytes[pos + i]) << (8 * i) }
        pos += MemoryLayout<T>.size
        return v
    }

    private func raw(_ n: Int) throws -> UnsafeRawBufferPointer {
        try need(n)
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos ..< pos + n])
    }

    private func length<T: FixedWidthInteger>(_ t: T.Type) throws -> Int {
        let v = try le(t)
        guard let n = Int(exactly: v), n >= 0 else { throw fail(.corrupt, "negative or huge length \(v)") }
        guard n <= bytes.count - pos else {
            throw fail(.truncated, "length \(n) runs past the end of the pickle (\(bytes.count - pos) bytes left)")
        }
        return n
    }

    private func line() throws -> [UInt8] {
        var end = pos
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        guard end < bytes.count else { throw fail(.truncated, "pickle ends inside a text line") }
        try checkFrame(end + 1)
        defer { pos = end + 1 }
        return Array(bytes[pos ..< end])
    }

    private func utf8(_ b: UnsafeRawBufferPointer) throws -> String {
        guard let s = String(validating: b, as: UTF8.self) else { throw fail(.corrupt, "invalid utf-8 in a string") }
        return s
    }

    private func utf8(_ b: [UInt8]) throws -> String {
        try b.withUnsafeBytes { try utf8($0) }
    }

    /// Python 2 byte strings: utf-8 when valid, else latin-1 (torch loads with encoding utf-8).
    /// A Python 2 `str`: UTF-8 text as torch decodes it by default; anything else as Latin-1, which
    /// torch reads only with `encoding='latin1'`, so the file is then marked as one torch's default
    /// `torch.load` refuses.
    /// A Python 2 `str` (SHORT_BINSTRING, BINSTRING): ASCII text at once; anything else kept as
    /// bytes until the tree is built, when the file's decoding is known.
    private func py2Node(_ b: UnsafeRawBufferPointer) -> Node {
        if b.allSatisfy({ $0 < 0x80 }) { return .value(.string(String(decoding: b, as: UTF8.self))) }
        if String(validating: b, as: UTF8.self) == nil, !py2Latin1 {
            if py2DecodedAsUTF8 { py2Conflict = true }
            py2Latin1 = true
            rejectedOpcodes.append("Python 2 str that is not UTF-8 (every Python 2 str read as Latin-1, as torch.load(encoding='latin1') reads them)")
        }
        return .py2Text(Array(b))
    }

    private var seenGlobals = Set<QualifiedName>()
    private var seenDisallowed = Set<QualifiedName>()

    /// Bytes `bytearray(n)` calls may still allocate, over the whole pickle (a budget per call
    /// would let many small calls ask for gigabytes).
    private lazy var allocationBudget = options.maxAllocatedBytes

    /// Takes `n` bytes from the allocation budget.
    /// - Throws: `.limit` when one call or the pickle's calls together ask for more.
    func chargeAllocation(_ n: Int, what: String) throws {
        guard n >= 0, n <= options.maxAllocationPerCall else {
            throw fail(.limit, "\(what) would allocate \(n) bytes, past the \(options.maxAllocationPerCall) one call may ask for")
        }
        guard n <= allocationBudget else {
            throw fail(.limit, "\(what) would allocate \(n) bytes, past the \(options.maxAllocatedBytes)-byte total the pickle's calls may ask for")
        }
        allocationBudget -= n
    }

    /// True once a Python 2 str of the file is not UTF-8: all of them decode as Latin-1.
    private var py2Latin1 = false
    /// A non-ASCII Python 2 str was decoded as UTF-8 before the file turned out to need Latin-1.
    private var py2DecodedAsUTF8 = false
    private var py2Conflict = false

    private func decodePy2(_ b: [UInt8]) -> String {
        if py2Latin1 { return String(b.map { Character(Unicode.Scalar($0)) }) }
        py2DecodedAsUTF8 = true
        return String(decoding: b, as: UTF8.self)
    }

    // MARK: stack

    /// Objects the pickle made so far: nodes, and each use of a shared node.
    private var objectCount = 0

    private func countObject() throws {
        guard objectCount < options.maxObjects else {
            throw fail(.limit, "more than \(options.maxObjects) objects in one pickle")
        }
        objectCount += 1
    }

    private func add(_ n: Node) throws -> Int {
        try countObject()
        guard nodes.count < Int(Int32.max) else {
            throw fail(.limit, "more than \(options.maxObjects) objects in one pickle")
        }
        if nodes.count == nodes.capacity, nodes.count >= 4096 {
            // a state dict takes about one node per 7 pickle bytes: room for them at once, so a
            // large arena is not copied as it doubles (each copy holds the old and the new buffer
            // at once); at most 128 MB of address space, of which only what is written is resident
            nodes.reserveCapacity(max(nodes.count * 2, min(bytes.count / 6, 1 << 23)))
        }
        nodes.append(n)
        return nodes.count - 1
    }

    private func push(_ n: Node) throws { stack.append(try add(n)) }

    /// Slots of `sharedNodes`: ints 0–255 (BININT1) at their value, then the two bools and `()`.
    private static let falseSlot = 256, trueSlot = 257, emptyTupleSlot = 258
    /// The node of each immutable value above once made, or -1: one node serves every use, as
    /// Python shares them (a state dict has five per tensor: offset, size, stride, the
    /// requires_grad flag and the hooks' `()`). Each use still counts against `maxObjects`.
    private var sharedNodes = [Int32](repeating: -1, count: 259)

    private func pushShared(_ n: Node, slot: Int) throws {
        let kept = sharedNodes[slot]
        guard kept >= 0 else {
            let i = try add(n)
            sharedNodes[slot] = Int32(truncatingIfNeeded: i)
            stack.append(i)
            return
        }
        try countObject()
        stack.append(Int(kept))
    }

    /// The node for a scalar: ints unboxed.
    private func node(_ v: Value) -> Node {
        if case let .int(i) = v { return .int(i) }
        return .value(v)
    }

    private func newTuple(_ items: [Int]) -> Node {
        let start = Int32(tupleItems.count)
        // node indices are below Int32.max (add), so are the items
        for i in items { tupleItems.append(Int32(truncatingIfNeeded: i)) }
        return .tuple(start: start, count: Int32(items.count))
    }

    /// The items of node `i` when it is a tuple or a list.
    private func sequence(_ i: Int) -> [Int]? {
        switch nodes[i] {
        case let .tuple(start, count): return tupleItems[Int(start) ..< Int(start + count)].map { Int($0) }
        case let .list(a): return a
        default: return nil
        }
    }

    private func newDict(_ kind: DictKind) -> Node { .emptyDict(kind) }

    /// The index in `dicts` of dict node `i`, giving an empty dict its `DictNode` now (to be
    /// changed); nil when node `i` is not a dict.
    private func mutableDict(_ i: Int) -> Int? {
        switch nodes[i] {
        case let .dict(d): return d
        case let .emptyDict(kind):
            dicts.append(DictNode(kind: kind))
            nodes[i] = .dict(dicts.count - 1)
            return dicts.count - 1
        default: return nil
        }
    }

    /// Dict node `i`'s contents (nil when it is not a dict).
    private func dictContents(_ i: Int) -> DictNode? {
        switch nodes[i] {
        case let .dict(d): return dicts[d]
        case let .emptyDict(kind): return DictNode(kind: kind)
        default: return nil
        }
    }

    private func newObject(_ o: ObjectNode) -> Node {
        objects.append(o)
        return .object(objects.count - 1)
    }

    private func globalNode(_ g: QualifiedName) -> Node {
        if let i = globalIndex[g] { return .global(i) }
        globalNames.append(g)
        globalIndex[g] = globalNames.count - 1
        return .global(globalNames.count - 1)
    }

    private func pop() throws -> Int {
        if let m = marks.last, stack.count <= m { throw fail(.corrupt, "stack underflow (pop across a mark)") }
        guard let v = stack.popLast() else { throw fail(.corrupt, "stack underflow") }
        return v
    }

    private func top() throws -> Int {
        if let m = marks.last, stack.count <= m { throw fail(.corrupt, "stack underflow (top across a mark)") }
        guard let v = stack.last else { throw fail(.corrupt, "stack underflow") }
        return v
    }

    private func popMark() throws -> [Int] {
        guard let m = marks.popLast() else { throw fail(.corrupt, "no mark on the stack") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private func memoPut(_ i: Int) throws {
        guard i >= 0 else { throw fail(.corrupt, "negative memo index \(i)") }
        let v = try top()
        if i < memoDense.count, let v32 = Int32(exactly: v) {
            if memoDense[i] < 0 { memoCount += 1 }
            memoDense[i] = v32
            return
        }
        // grow the array over a small gap only, and never over indices already in the dictionary
        if memoSparse.isEmpty, i >= memoDense.count, i - memoDense.count < 1024, let v32 = Int32(exactly: v) {
            memoDense += [Int32](repeating: -1, count: i - memoDense.count)
            memoDense.append(v32)
            memoCount += 1
            return
        }
        if i < memoDense.count, memoDense[i] >= 0 {
            // an arena index past Int32 (maxObjects raised that far) replacing an array entry
            memoDense[i] = -1
            memoCount -= 1
        }
        if memoSparse.updateValue(v, forKey: i) == nil { memoCount += 1 }
    }

    private func memoGet(_ i: Int) throws {
        if i >= 0, i < memoDense.count, memoDense[i] >= 0 {
            stack.append(Int(memoDense[i]))
            return
        }
        guard let v = memoSparse[i] else { throw fail(.corrupt, "memo index \(i) read before it was written") }
        stack.append(v)
    }

    private func typeName(_ i: Int) -> String {
        switch nodes[i] {
        case let .value(v): return v.typeName
        case .int: return "int"
        case .bool: return "bool"
        case .tuple: return "tuple"
        case .list: return "list"
        case .set: return "set"
        case let .dict(d): return dicts[d].kind.rawValue
        case let .emptyDict(kind): return kind.rawValue
        case let .global(g): return globalNames[g].description
        case let .object(o): return objects[o].global.description
        case .legacyTensor: return "Tensor"
        case .py2Text: return "str"
        }
    }

    private func keyID(_ i: Int) -> KeyID? {
        switch nodes[i] {
        case let .value(.string(s)): return .string(ExactKey(s))
        case let .py2Text(b): return .py2(ExactKey(String(decoding: b, as: UTF8.self) + String(b.count)))
        case let .value(.int(v)), let .int(v): return .int(v)
        case let .value(.bool(b)), let .bool(b): return .int(b ? 1 : 0)
        case let .value(.float(f)):
            if f.isNaN { return .node(i) }  // NaN equals no other key, but one object is one key
            if f.rounded() == f, abs(f) < 9.2e18 { return .int(Int(f)) }
            return .float((f == 0 ? 0.0 : f).bitPattern)
        case let .value(.bytes(b)): return .bytes(b)
        default: return nil
        }
    }

    private func setItem(_ dictIndex: Int, _ k: Int, _ v: Int) throws {
        if case let .object(o) = nodes[dictIndex], options.salvage {
            // dict subclasses outside the allowlist (collections.defaultdict): the items become
            // the object's state, read like attributes
            if objects[o].state == nil { objects[o].state = try add(newDict(.dict)) }
            if let s = objects[o].state, mutableDict(s) != nil { return try setItem(s, k, v) }
        }
        guard let d = mutableDict(dictIndex) else {
            throw fail(.corrupt, "setitem on a \(typeName(dictIndex)), expected a dict")
        }
        guard let id = keyID(k) else {
            dicts[d].items.append((k, v))  // a key that equals no other (a tuple, an object)
            return
        }
        if dicts[d].slots.count < 2 * (dicts[d].items.count + 1) { rehash(d) }
        let mask = dicts[d].slots.count - 1
        var h = id.hashValue & mask
        while case let at = Int(dicts[d].slots[h]), at >= 0 {
            if keyID(dicts[d].items[at].key) == id {
                dicts[d].items[at].value = v
                return
            }
            h = (h + 1) & mask
        }
        dicts[d].slots[h] = Int32(truncatingIfNeeded: dicts[d].items.count)
        dicts[d].items.append((k, v))
    }

    /// Rebuilds dict `d`'s slot table at four times its item count (a power of two).
    private func rehash(_ d: Int) {
        var size = 8
        while size < 4 * (dicts[d].items.count + 1) { size *= 2 }
        var slots = [Int32](repeating: -1, count: size)
        for (at, item) in dicts[d].items.enumerated() {
            guard let id = keyID(item.key) else { continue }
            var h = id.hashValue & (size - 1)
            while slots[h] >= 0 { h = (h + 1) & (size - 1) }
            slots[h] = Int32(truncatingIfNeeded: at)
        }
        dicts[d].slots = slots
    }

    private func appendItems(_ listIndex: Int, _ items: [Int]) throws {
        switch nodes[listIndex] {
        case var .list(a):
            nodes[listIndex] = .value(.none)
            a.append(contentsOf: items)
            nodes[listIndex] = .list(a)
        case let .object(o) where options.salvage:
            // list subclasses outside the allowlist: keep the items as arguments
            objects[o].arguments.append(contentsOf: items)
        default:
            throw fail(.corrupt, "append on a \(typeName(listIndex)), expected a list")
        }
    }

    // MARK: the interpreter

    /// Runs the pickle to STOP and returns the top-level object.
    /// - Throws: `FormatError` naming the member and offset of the offending opcode.
    func run() throws -> Value {
        let root = try runToStop()
        let v = try value(of: root)
        if py2Conflict {
            throw fail(.unsupported, "Python 2 strings decode differently before and after a str that is not UTF-8 (torch.load reads this file with encoding='latin1' only)")
        }
        return v
    }

    private func runToStop() throws -> Int {
        while true {
            opStart = pos
            guard pos < bytes.count else { throw fail(.truncated, "pickle ends without STOP") }
            let byte = bytes[pos]
            pos += 1
            guard let op = Opcode(rawValue: byte) else {
                throw fail(.corrupt, "unknown opcode 0x\(String(byte, radix: 16))")
            }
            if !Opcode.acceptedByTorchWeightsOnly.contains(op), !rejectedOpcodes.contains(op.name) {
                rejectedOpcodes.append(op.name)
            }
            switch op {
            case .PROTO:
                let p = Int(try u8())
                guard p <= 5 else { throw fail(.unsupported, "pickle protocol \(p) (ckpt reads 0 to 5)") }
                proto = max(proto, p)
            case .FRAME:
                // Python's unpickler reads the whole frame first: one that runs past the end fails there
                if pos - 1 < frameEnd {
                    throw fail(.corrupt, "a FRAME begins before the end of the current one")
                }
                let n = try le(UInt64.self)
                guard n <= UInt64(bytes.count - pos) else {
                    throw fail(.truncated, "FRAME of \(n) bytes runs past the end of the pickle (\(bytes.count - pos) left)")
                }
                frameEnd = pos + Int(n)
            case .STOP:
                let r = try pop()
                endOffset = pos
                return r
            case .MARK: marks.append(stack.count)
            case .POP:
                if let m = marks.last, m == stack.count { marks.removeLast() } else { _ = try pop() }
            case .POP_MARK: _ = try popMark()
            case .DUP: stack.append(try top())

            case .NONE: try push(.value(.none))
            case .NEWTRUE: try pushShared(.bool(true), slot: Unpickler.trueSlot)
            case .NEWFALSE: try pushShared(.bool(false), slot: Unpickler.falseSlot)
            case .BININT: try push(.int(Int(try le(Int32.self))))
            case .BININT1: let v = Int(try u8()); try pushShared(.int(v), slot: v)
            case .BININT2: try push(.int(Int(try le(UInt16.self))))
            case .LONG1:
                let n = Int(try u8())
                try push(node(longValue(try raw(n))))
            case .LONG4:
                let n = try length(Int32.self)
                try push(node(longValue(try raw(n))))
            case .INT:
                let text = try utf8(try line())
                if text == "00" { try push(.bool(false)) }
                else if text == "01" { try push(.bool(true)) }
                else { try push(node(try decimal(text))) }
            case .LONG:
                var text = try utf8(try line())
                if text.hasSuffix("L") { text.removeLast() }
                try push(.value(try decimal(text)))
            case .BINFLOAT:
                let bits = try le(UInt64.self).byteSwapped // big-endian on the wire
                try push(.value(.float(Double(bitPattern: bits))))
            case .FLOAT:
                let text = try utf8(try line())
                guard let d = Double(text) else { throw fail(.corrupt, "bad float literal") }
                try push(.value(.float(d)))

            case .BINUNICODE: try push(.value(.string(try utf8(try raw(try length(UInt32.self))))))
            case .SHORT_BINUNICODE: try push(.value(.string(try utf8(try raw(Int(try u8()))))))
            case .BINUNICODE8: try push(.value(.string(try utf8(try raw(try length(UInt64.self))))))
            case .UNICODE: try push(.value(.string(try rawUnicodeEscape(try line()))))
            case .SHORT_BINSTRING: try push(py2Node(try raw(Int(try u8()))))
            case .BINSTRING:
                let n = try length(Int32.self)
                try push(py2Node(try raw(n)))
            case .STRING:
                try push(.value(.string(try quotedString(try line()))))
            case .SHORT_BINBYTES: try push(.value(.bytes(Array(try raw(Int(try u8()))))))
            case .BINBYTES: try push(.value(.bytes(Array(try raw(try length(UInt32.self))))))
            case .BINBYTES8, .BYTEARRAY8: try push(.value(.bytes(Array(try raw(try length(UInt64.self))))))

            case .EMPTY_TUPLE: try pushShared(newTuple([]), slot: Unpickler.emptyTupleSlot)
            case .TUPLE1: let a = try pop(); try push(newTuple([a]))
            case .TUPLE2: let b = try pop(); let a = try pop(); try push(newTuple([a, b]))
            case .TUPLE3: let c = try pop(); let b = try pop(); let a = try pop(); try push(newTuple([a, b, c]))
            case .TUPLE: try push(newTuple(try popMark()))
            case .EMPTY_LIST: try push(.list([]))
            case .LIST: try push(.list(try popMark()))
            case .APPEND: let v = try pop(); try appendItems(try top(), [v])
            case .APPENDS: let items = try popMark(); try appendItems(try top(), items)
            case .EMPTY_DICT: try push(newDict(.dict))
            case .DICT:
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail(.corrupt, "odd number of items for DICT") }
                let d = try add(newDict(.dict))
                for i in stride(from: 0, to: items.count, by: 2) { try setItem(d, items[i], items[i + 1]) }
                stack.append(d)
            case .SETITEM:
                let v = try pop(); let k = try pop()
                try setItem(try top(), k, v)
            case .SETITEMS:
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail(.corrupt, "odd number of items for SETITEMS") }
                let d = try top()
                for i in stride(from: 0, to: items.count, by: 2) { try setItem(d, items[i], items[i + 1]) }
            case .EMPTY_SET: try push(.set([]))
            case .ADDITEMS:
                let items = try popMark()
                let s = try top()
                guard case var .set(a) = nodes[s] else { throw fail(.corrupt, "additems on a \(typeName(s)), expected a set") }
                nodes[s] = .value(.none)  // release the arena's copy: appending must not copy the array
                a.append(contentsOf: items)
                nodes[s] = .set(a)
            case .FROZENSET: try push(.set(try popMark()))

            case .PUT:
                guard let i = Int(try utf8(try line())) else { throw fail(.corrupt, "bad memo index") }
                try memoPut(i)
            case .BINPUT: try memoPut(Int(try u8()))
            case .LONG_BINPUT: try memoPut(Int(try le(UInt32.self)))
            case .MEMOIZE: try memoPut(memoCount)
            case .GET:
                guard let i = Int(try utf8(try line())) else { throw fail(.corrupt, "bad memo index") }
                try memoGet(i)
            case .BINGET: try memoGet(Int(try u8()))
            case .LONG_BINGET: try memoGet(Int(try le(UInt32.self)))

            case .GLOBAL:
                let module = try utf8(try line())
                let name = try utf8(try line())
                try push(globalNode(try resolve(QualifiedName(module, name))))
            case .STACK_GLOBAL:
                let n = try pop(); let m = try pop()
                guard case let .value(.string(name)) = nodes[n], case let .value(.string(module)) = nodes[m] else {
                    throw fail(.corrupt, "stack_global operands are not strings")
                }
                try push(globalNode(try resolve(QualifiedName(module, name))))
            case .REDUCE:
                let args = try pop()
                let callable = try pop()
                try push(try call(callable, args, construction: .call))
            case .NEWOBJ:
                let args = try pop()
                let cls = try pop()
                try push(try call(cls, args, construction: .new))
            case .NEWOBJ_EX:
                _ = try pop() // kwargs
                let args = try pop()
                let cls = try pop()
                try push(try call(cls, args, construction: .new))
            case .BUILD:
                let state = try pop()
                try build(try top(), state: state)
            case .BINPERSID:
                let pid = try pop()
                try push(try persistent(pid))
            case .PERSID:
                let text = try utf8(try line())
                try push(try persistent(try add(.value(.string(text)))))
            case .INST:
                let module = try utf8(try line())
                let name = try utf8(try line())
                throw fail(.refused, "opcode INST would instantiate \(module).\(name); ckpt never instantiates classes")
            case .OBJ:
                throw fail(.refused, "opcode OBJ would instantiate a class; ckpt never instantiates classes")
            case .EXT1, .EXT2, .EXT4:
                throw fail(.refused, "opcode \(op.name) names a global through the copyreg extension registry")
            case .NEXT_BUFFER, .READONLY_BUFFER:
                throw fail(.unsupported, "opcode \(op.name) needs out-of-band buffers")
            }
        }
    }

    // MARK: scalars

    private func longValue(_ b: UnsafeRawBufferPointer) -> Value {
        if b.isEmpty { return .int(0) }
        if b.count <= 8 {
            var v: UInt64 = 0
            for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
            let shift = UInt64(64 - 8 * b.count)
            // sign-extend from the top byte
            let signed = Int64(bitPattern: v << shift) >> Int64(shift)
            return .int(Int(signed))
        }
        if b.count <= 64 { return .bigInt(BigDecimal.fromTwosComplement(Array(b))) }
        return .bigInt("<\(b.count)-byte integer>")
    }

    private func decimal(_ text: String) throws -> Value {
        if let i = Int(text) { return .int(i) }
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        guard !digits.isEmpty, digits.count < 4096, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw fail(.corrupt, "bad integer literal")
        }
        return .bigInt(text)
    }

    private func quotedString(_ b: [UInt8]) throws -> String {
        guard b.count >= 2, let q = b.first, q == b.last, q == 0x27 || q == 0x22 else {
            throw fail(.corrupt, "STRING argument is not quoted")
        }
        return try PyEscapes.decode(Array(b[1 ..< b.count - 1]), rawUnicode: false) ?? { throw fail(.corrupt, "bad escape in STRING") }()
    }

    private func rawUnicodeEscape(_ b: [UInt8]) throws -> String {
        guard let s = try PyEscapes.decode(b, rawUnicode: true) else { throw fail(.corrupt, "bad escape in UNICODE") }
        return s
    }

    // MARK: globals and calls

    private func resolve(_ raw: QualifiedName) throws -> QualifiedName {
        let g = Allowlist.python3Name(raw)
        if seenGlobals.insert(g).inserted { globals.append(g) }
        if Allowlist.contains(g) || options.inertGlobals.contains(g) { return g }
        if seenDisallowed.insert(g).inserted { disallowed.append(g) }
        guard options.salvage else {
            var kind = ""
            if g.module.hasPrefix("omegaconf") || (g.module == "typing" && g.name == "Any") {
                kind = " (an OmegaConf/Hydra config, as Lightning saves hyper-parameters)"
            } else if g.module.hasPrefix("torch.nn.modules") || g.module.hasPrefix("torchvision.models") {
                kind = " (a whole pickled nn.Module, as torch.save(model) writes it)"
            } else if g.module == "argparse" {
                kind = " (argparse arguments saved beside the weights)"
            }
            throw fail(.refused, "global '\(g)' is not allowed\(kind) (torch's weights_only loader refuses it too); use --salvage to read the file with it kept as an inert node")
        }
        return g
    }

    private func call(_ callable: Int, _ argsIndex: Int, construction: OpaqueObject.Construction) throws -> Node {
        let args: [Int]
        switch nodes[argsIndex] {
        case .tuple: args = sequence(argsIndex) ?? []
        case .list(let a) where options.salvage: args = a
        default: throw fail(.corrupt, "call arguments are a \(typeName(argsIndex)), expected a tuple")
        }
        switch nodes[callable] {
        case let .global(gi):
            let g = globalNames[gi]
            if Allowlist.contains(g) {
                if let container = try containerCall(g, args) { return container }
                switch try TorchRebuild.call(g, construction: construction, args: args.map { try value(of: $0) }, context: self) {
                case let .value(v): return .value(v)
                case let .legacyTensor(d): return .legacyTensor(d)
                }
            }
            return newObject(ObjectNode(global: g, construction: construction, arguments: args, state: nil))
        case let .object(o) where options.salvage:
            // calling an opaque object (a method fetched by getattr, say): keep it inert
            return newObject(ObjectNode(global: objects[o].global, construction: construction, arguments: args, state: nil))
        case let .value(.object(o)) where options.salvage:
            // a class the persistent loader gave (a legacy file's pickled nn.Module source)
            return newObject(ObjectNode(global: o.global, construction: construction, arguments: args, state: nil))
        case let .value(.global(g)) where options.salvage:
            return newObject(ObjectNode(global: g, construction: construction, arguments: args, state: nil))
        default:
            throw fail(.corrupt, "\(construction == .call ? "reduce" : "newobj") on a \(typeName(callable)), expected a class or function")
        }
    }

    /// `OrderedDict()`, `OrderedDict(pairs)`, `Counter()`, `set(items)`: built in the arena so
    /// later SETITEMS and memo references see one object.
    private func containerCall(_ g: QualifiedName, _ args: [Int]) throws -> Node? {
        switch (g.module, g.name) {
        case ("collections", "OrderedDict"), ("collections", "Counter"):
            let kind: DictKind = g.name == "Counter" ? .counter : .orderedDict
            // no arguments (a tensor's backward hooks): the node itself, no arena slot to fill
            guard let first = args.first else { return newDict(kind) }
            let d = try add(newDict(kind))
            guard args.count == 1 else { throw fail(.corrupt, "\(g) takes at most 1 argument, got \(args.count)") }
            let pairs: [Int]
            switch nodes[first] {
            case .list, .tuple: pairs = sequence(first) ?? []
            case .dict, .emptyDict: pairs = []; for (k, v) in dictContents(first)?.items ?? [] { try setItem(d, k, v) }
            default: throw fail(.corrupt, "\(g) argument is a \(typeName(first))")
            }
            for p in pairs {
                // any two-item iterable, as dict() takes it: tuples, and the two-element lists of
                // Python 2's OrderedDict.__reduce__
                guard let kv = sequence(p), kv.count == 2 else { throw fail(.corrupt, "\(g) item is not a pair") }
                try setItem(d, kv[0], kv[1])
            }
            let node = nodes[d]
            return node
        case ("builtins", "set"):
            guard args.count <= 1 else { throw fail(.corrupt, "set takes at most 1 argument, got \(args.count)") }
            guard let first = args.first else { return .set([]) }
            switch nodes[first] {
            case let .list(a), let .set(a): return .set(a)
            case .tuple: return .set(sequence(first) ?? [])
            default: throw fail(.corrupt, "set argument is a \(typeName(first))")
            }
        default:
            return nil
        }
    }

    private func build(_ target: Int, state stateIndex: Int) throws {
        _ = mutableDict(target)
        switch nodes[target] {
        case let .dict(di):
            // OrderedDict.__dict__.update(state): how state_dict()._metadata arrives
            var d = dicts[di]
            var stateDict: DictNode?
            switch nodes[stateIndex] {
            case .dict, .emptyDict: stateDict = dictContents(stateIndex)
            case let .tuple(_, count) where count == 2:
                let t = sequence(stateIndex) ?? []
                if let s = dictContents(t[0]) { stateDict = s }
                if case .value(.none) = nodes[t[0]], let s = dictContents(t[1]) { stateDict = s }
            default: break
            }
            guard let s = stateDict else { throw fail(.corrupt, "build on a \(d.kind.rawValue) with a \(typeName(stateIndex)) state") }
            // setattr in order, a later value of one name replacing the earlier (in place, no
            // quadratic search: a position per name)
            var position: [ExactKey: Int] = [:]
            for (i, a) in d.attributes.enumerated() { position[ExactKey(a.name)] = i }
            for (k, v) in s.items {
                guard case let .value(.string(name)) = nodes[k] else { throw fail(.corrupt, "attribute name is not a string") }
                if let at = position[ExactKey(name)] {
                    d.attributes[at].value = v
                } else {
                    position[ExactKey(name)] = d.attributes.count
                    d.attributes.append((name, v))
                }
            }
            dicts[di] = d
        case let .legacyTensor(dtype):
            nodes[target] = .value(.tensor(try TorchRebuild.setState(dtype: dtype, state: try value(of: stateIndex), context: self)))
        case let .value(.tensor(t)):
            let state = try value(of: stateIndex)
            switch state {
            case let .tuple(items) where items.count == 4:
                // legacy `set_(storage, offset, size, stride)`; torch's set_ fails on a tensor that
                // requires grad (an in-place operation on a leaf)
                guard case .storage = items[0] else { throw fail(.unsupported, "tensor BUILD state of 4 items whose first is a \(items[0].typeName), expected a storage") }
                guard !t.requiresGrad else { throw fail(.unsupported, "tensor BUILD set_() on a tensor that requires grad (torch fails: a leaf variable used in an in-place operation)") }
                var result = try TorchRebuild.setState(dtype: t.dtype, state: state, context: self)
                result.isParameter = t.isParameter
                nodes[target] = .value(.tensor(result))
            case let .tuple(items) where (items.count == 5 || items.count == 3) && t.isParameter:
                // Tensor.__setstate__: (data, requires_grad, ..., hooks) — `self.data = state[0]` — or
                // (requires_grad, _, hooks): applied as torch applies them
                var result = t
                if items.count == 5 {
                    guard case var .tensor(data) = items[0] else {
                        throw fail(.unsupported, "tensor BUILD state's data is a \(items[0].typeName), expected a tensor")
                    }
                    data.isParameter = t.isParameter
                    result = data
                }
                let flag = items[items.count == 5 ? 3 : 0]
                switch flag {
                case let .bool(b): result.requiresGrad = b
                case let .int(i): result.requiresGrad = i != 0
                default: throw fail(.unsupported, "tensor BUILD state's requires_grad is a \(flag.typeName)")
                }
                nodes[target] = .value(.tensor(result))
            case .none:
                break
            case .dict:
                // Tensor.__setstate__ unpacks a tuple: a dict fails in torch
                throw fail(.unsupported, "tensor BUILD state is a dict (torch's Tensor.__setstate__ expects a tuple and fails)")
            default:
                throw fail(.unsupported, "tensor BUILD state is a \(state.typeName), which torch would apply to the tensor")
            }
        case let .object(o):
            objects[o].state = stateIndex
        default:
            throw fail(.corrupt, "build on a \(typeName(target))")
        }
    }

    private func persistent(_ pid: Int) throws -> Node {
        guard let load = persistentLoad else {
            throw fail(.corrupt, "persistent id where no storage can be referenced")
        }
        do {
            return .value(try load(try value(of: pid)))
        } catch let e as FormatError {
            throw e
        } catch {
            throw fail(.corrupt, "\(error)")
        }
    }

    /// Error constructor for rebuild helpers, pointing at the current opcode.
    func rebuildError(_ kind: FormatError.Kind, _ message: String) -> FormatError { fail(kind, message) }

    /// Sparse tensors rebuilt so far (their index values are checked once the file is read).
    private(set) var sparseTensors = 0

    /// Counts a rebuilt sparse tensor.
    func noteSparseTensor() { sparseTensors += 1 }

    /// Records a note about something kept inert.
    func warn(_ message: String) {
        if warnings.count < 100, !warnings.contains(message) { warnings.append(message) }
    }

    /// Whether globals outside the allowlist are kept inert.
    var salvage: Bool { options.salvage }

    /// Size and stride lists seen so far, each once.
    private var intLists = InternedLists()

    /// `list`, or an equal list met before: tensors of one shape share one array (arrays are
    /// copy-on-write) where each held two of its own, 96 bytes a tensor.
    func interned(_ list: [Int]) -> [Int] { intLists.interned(list) }


    // MARK: arena → values

    /// Values built so far, across every conversion of this pickle (REDUCE arguments and the
    /// final tree), so many small expansions cannot add up to a large one.
    private var expanded = 0
    /// The expansion budget of the conversion under way.
    private var expansionLimit = 0

    /// Most values the pickle may expand to once its first `bytesRead` bytes are read: the
    /// fixed budget, or more for a large pickle (what is read so far, never what a window or a
    /// length field promises, so the budget is the same however the bytes are given).
    func expansionLimit(bytesRead: Int) -> Int {
        max(options.maxExpandedValues, Checked.mul(bytesRead, options.expandedValuesPerPickleByte) ?? Int.max)
    }

    /// Converts node `i` to a value tree, within the depth and expansion budgets.
    private func value(of i: Int) throws -> Value {
        expansionLimit = expansionLimit(bytesRead: pos)
        var budget = expansionLimit - expanded
        defer { expanded = expansionLimit - budget }
        var trail = Trail()
        return try value(of: i, depth: 0, budget: &budget, component: "", trail: &trail)
    }

    /// The containers being converted, outermost first, with the path component each was found
    /// under: a container met again inside itself is a reference cycle, and only then is its
    /// dotted path spelled out (building every path eagerly costs the depth at every value).
    private struct Trail {
        var entries: [(node: Int, component: String)] = []
        /// Levels found by a scan of `entries`; deeper ones through `deepTrailPosition`.
        static let scanned = 16

        func path(upTo d: Int) -> String {
            entries[0 ... d].map(\.component).filter { !$0.isEmpty }.joined(separator: ".")
        }
    }

    /// Where a container deeper than `Trail.scanned` in the current trail sits in it, by node:
    /// the first levels are found by scanning the trail, so a shallow tree (a state dict) needs
    /// no table, where an array over every node cost 4 bytes a node (60 bytes a tensor); only
    /// containers are ever looked up (nothing else can be on the trail).
    private var deepTrailPosition: [Int32: Int32] = [:]

    /// Position of container node `i` in the current trail, if it is on it.
    private func trailPosition(of i: Int, in trail: Trail) -> Int? {
        for (d, e) in trail.entries.prefix(Trail.scanned).enumerated() where e.node == i { return d }
        guard trail.entries.count > Trail.scanned else { return nil }
        return deepTrailPosition[Int32(truncatingIfNeeded: i)].map(Int.init)
    }

    /// Converts node `i`, found under path `component` of its parent; a container met again
    /// inside itself becomes a `.reference` to where it was first entered, as Python's objects
    /// refer to themselves.
    private func value(of i: Int, depth: Int, budget: inout Int, component: String, trail: inout Trail) throws -> Value {
        guard depth <= options.maxDepth else {
            throw fail(.limit, "objects nested deeper than \(options.maxDepth) levels")
        }
        let isContainer: Bool
        switch nodes[i] {
        case .tuple, .list, .set, .dict, .object: isContainer = true
        default: isContainer = false
        }
        if isContainer, let d = trailPosition(of: i, in: trail) { return .reference(trail.path(upTo: d)) }
        budget -= 1
        guard budget >= 0 else {
            throw fail(.limit, "object tree expands to more than \(expansionLimit) values (shared references)")
        }
        func child(_ j: Int, _ c: String) throws -> Value {
            try value(of: j, depth: depth + 1, budget: &budget, component: c, trail: &trail)
        }
        if isContainer {
            if trail.entries.count >= Trail.scanned { deepTrailPosition[Int32(truncatingIfNeeded: i)] = Int32(trail.entries.count) }
            trail.entries.append((i, component))
        }
        defer {
            if isContainer {
                trail.entries.removeLast()
                if trail.entries.count >= Trail.scanned { deepTrailPosition[Int32(truncatingIfNeeded: i)] = nil }
            }
        }
        switch nodes[i] {
        case let .value(v): return v
        case let .int(v): return .int(v)
        case let .bool(b): return .bool(b)
        case .tuple: return .tuple(try (sequence(i) ?? []).enumerated().map { try child($1, String($0)) })
        case let .list(a): return .list(try a.enumerated().map { try child($1, String($0)) })
        case let .set(a): return .set(try a.enumerated().map { try child($1, String($0)) })
        case let .emptyDict(kind):
            return .dict(PyDict(kind: kind))
        case let .dict(di):
            let d = dicts[di]
            var items: [(key: Value, value: Value)] = []
            items.reserveCapacity(d.items.count)
            for (k, v) in d.items {
                let key = try child(k, "")
                items.append((key, try child(v, key.pathComponent)))
            }
            var attrs: [(name: String, value: Value)] = []
            for (n, v) in d.attributes { attrs.append((n, try child(v, ""))) }
            return .dict(PyDict(items: items, kind: d.kind, attributes: attrs))
        case let .global(gi):
            let g = globalNames[gi]
            if g.module == "torch", let d = DType(rawValue: g.name) { return .dtype(d) }
            return .global(g)
        case let .object(oi):
            let o = objects[oi]
            let args = try o.arguments.enumerated().map { try child($1, "<arg\($0)>") }
            let state = try o.state.map { try child($0, "") }
            return .object(OpaqueObject(global: o.global, construction: o.construction, arguments: args, state: state))
        case .legacyTensor:
            throw fail(.corrupt, "legacy tensor object without its storage state")
        case let .py2Text(b):
            return .string(decodePy2(b))
        }
    }
}

extension FormatInfo {
    /// Takes what a finished unpickler learned: protocol, globals, opcodes torch rejects, warnings.
    mutating func record(_ u: Unpickler) {
        pickleProtocol = u.proto
        for g in u.globals where !globals.contains(g) { globals.append(g) }
        for g in u.disallowed where !disallowedGlobals.contains(g) { disallowedGlobals.append(g) }
        for o in u.rejectedOpcodes where !opcodesRejectedByTorch.contains(o) { opcodesRejectedByTorch.append(o) }
        warnings += u.warnings
        sparseTensors += u.sparseTensors
    }
}
