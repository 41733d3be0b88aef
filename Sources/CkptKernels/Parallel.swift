import Dispatch

/// Runs `body(i)` for `i` in `0..<count` across the machine's cores; returns when all are done.
///
/// Small counts run inline: spawning work costs more than a few microseconds of compute.
package func parallelFor(_ count: Int, minimumWork: Int = 2, _ body: (Int) -> Void) {
    if count < minimumWork {
        for i in 0 ..< count { body(i) }
        return
    }
    withoutActuallyEscaping(body) { b in
        let box = UncheckedSendable(b)
        DispatchQueue.concurrentPerform(iterations: count) { i in box.value(i) }
    }
}

/// Runs `body` on consecutive ranges covering `0..<extent`, one per lane (at most `lanes`), each a
/// multiple of `multiple` long but the last, across the cores.
func parallelRanges(_ extent: Int, lanes: Int, multiple: Int = 1, _ body: (Range<Int>) -> Void) {
    guard extent > 0 else { return }
    let chunk = max(1, ((extent + lanes - 1) / max(lanes, 1) + multiple - 1) / multiple * multiple)
    parallelFor((extent + chunk - 1) / chunk) { part in
        let i0 = part * chunk
        body(i0 ..< min(extent, i0 + chunk))
    }
}

/// Wraps a value that is shared across threads by construction (disjoint writes), so the
/// compiler lets it into a concurrent closure.
package struct UncheckedSendable<Value>: @unchecked Sendable {
    package let value: Value
    package init(_ value: Value) { self.value = value }
}
