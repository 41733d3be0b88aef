/// Positions of keys in a caller's list, found by exact equality (Python's `str` equality: the
/// same Unicode scalars, which for Swift strings is the same UTF-8 bytes): an open-addressing
/// table of 4-byte positions, at most half full. A `[ExactKey: Int]` costs about 60 bytes an
/// entry; this costs 8–16, which counts in a zip of 300,000 records.
///
/// The table keeps no keys: the caller says whether position `i` holds the key looked for, and
/// gives the hash of position `i` when the table grows.
struct KeyIndex {
    /// -1: empty; otherwise a position in the caller's list.
    private var slots: [Int32] = []
    /// Positions stored.
    private(set) var count = 0

    /// Swift's per-process seeded hash of UTF-8 bytes: a file cannot choose names that collide
    /// (a fixed hash would let 300,000 crafted names make every lookup a scan of the table).
    static func hash<C: Collection>(_ bytes: C) -> Int where C.Element == UInt8 {
        var h = Hasher()
        if bytes.withContiguousStorageIfAvailable({ h.combine(bytes: UnsafeRawBufferPointer($0)) }) == nil {
            Array(bytes).withUnsafeBytes { h.combine(bytes: $0) }
        }
        return h.finalize()
    }

    /// The hash of `key`'s UTF-8 bytes.
    static func hash(_ key: String) -> Int {
        var k = key
        return k.withUTF8 { hash($0) }
    }

    /// The stored position for which `isKey` holds, among those stored under `hash`.
    func find(hash: Int, _ isKey: (Int) -> Bool) -> Int? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        var s = hash & mask
        while slots[s] >= 0 {
            if isKey(Int(slots[s])) { return Int(slots[s]) }
            s = (s + 1) & mask
        }
        return nil
    }

    /// Stores `position` under `hash` (the caller checked that its key is not stored yet);
    /// `hashOf(i)` gives the hash of stored position `i` when the table grows.
    mutating func insert(_ position: Int, hash: Int, hashOf: (Int) -> Int) {
        precondition(position >= 0 && position < Int(Int32.max))
        if (count + 1) * 2 > slots.count {
            let old = slots
            slots = [Int32](repeating: -1, count: max(16, slots.count * 2))
            for p in old where p >= 0 { place(p, hash: hashOf(Int(p))) }
        }
        place(Int32(position), hash: hash)
        count += 1
    }

    private mutating func place(_ p: Int32, hash: Int) {
        let mask = slots.count - 1
        var s = hash & mask
        while slots[s] >= 0 { s = (s + 1) & mask }
        slots[s] = p
    }
}

extension String {
    /// True when the two strings have the same UTF-8 bytes (the same Unicode scalars).
    func sameScalars(_ other: String) -> Bool {
        utf8.elementsEqual(other.utf8)
    }
}

/// Equal integer lists (sizes, strides) as one shared array each, up to a fixed number of
/// distinct lists so a file of all-different shapes costs no more than it did.
struct InternedLists {
    private var seen = Set<[Int]>()
    private static let limit = 1 << 16

    /// `list`, or the equal list kept before.
    mutating func interned(_ list: [Int]) -> [Int] {
        if let kept = seen.firstIndex(of: list) { return seen[kept] }
        if seen.count < InternedLists.limit { seen.insert(list) }
        return list
    }
}
