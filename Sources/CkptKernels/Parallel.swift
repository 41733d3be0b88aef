import Dispatch

/// Runs `body(i)` for `i` in `0..<count` across the machine's cores; returns when all are done.
///
/// Small counts run inline: spawning work costs more than a few microseconds of compute.
func parallelFor(_ count: Int, minimumWork: Int = 2, _ body: (Int) -> Void) {
    if count < minimumWork {
        for i in 0 ..< count { body(i) }
        return
    }
    withoutActuallyEscaping(body) { b in
        let box = UncheckedSendable(b)
        DispatchQueue.concurrentPerform(iterations: count) { i in box.value(i) }
    }
}

/// Wraps a value that is shared across threads by construction (disjoint writes), so the
/// compiler lets it into a concurrent closure.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
