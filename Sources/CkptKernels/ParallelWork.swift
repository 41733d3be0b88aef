/// Runs `body(i)` for `i` in `0..<count` across the cores, or on the calling thread when the
/// whole loop touches fewer than `serialWorkLimit` elements (`count · elementsPerItem`): handing
/// work to the other core costs some microseconds, about what one core takes to stream that much
/// memory, and a small training step (smallcnn at batch 4) is made of such loops.
package func parallelForWork(_ count: Int, elementsPerItem: Int, _ body: (Int) -> Void) {
    if count < 2 || count * elementsPerItem < serialWorkLimit {
        for i in 0 ..< count { body(i) }
        return
    }
    parallelFor(count, body)
}

/// Elements below which a memory-bound loop of the training step stays on one thread.
package let serialWorkLimit = 1 << 15

extension Array where Element == Int32 {
    /// An array of `count` indices whose contents are unspecified, for buffers a kernel overwrites
    /// entirely (no zero-fill).
    static func uninitialized(_ count: Int) -> [Int32] {
        [Int32](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }
}
