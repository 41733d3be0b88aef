import Dispatch
import Foundation
import Synchronization

/// Runs `body(i)` for `i` in `0..<count` across the machine's cores; returns when all are done.
///
/// Small counts run inline: spawning work costs more than a few microseconds of compute. Work goes
/// to `SpinningPool`'s threads, which wait for the next call spinning for a moment, rather than to
/// Dispatch's, which park between calls (a batch-1 forward makes ~150 calls, each tens of
/// microseconds of wake-up on a VM); a nested or concurrent call uses Dispatch.
package func parallelFor(_ count: Int, minimumWork: Int = 2, _ body: (Int) -> Void) {
    if count < minimumWork {
        for i in 0 ..< count { body(i) }
        return
    }
    withoutActuallyEscaping(body) { b in
        let box = UncheckedSendable(b)
        if let pool = SpinningPool.shared, withUnsafePointer(to: box, { pool.run(count, body: UnsafeRawPointer($0)) }) { return }
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

/// One helper thread per core beyond the first, kept for the life of the process, that runs the
/// indices of `parallelFor` calls beside the calling thread (OpenMP's team, as torch's kernels use).
///
/// A call publishes its job in one atomic word, `ticket` = generation · 2⁴⁴ + count · 2²² + next index:
/// every index is claimed by a compare-and-swap on that word, by the caller or a helper, so a
/// helper that arrives late (or from an older call) claims nothing, and the body pointer is read
/// only between a successful claim and the `done` count the caller waits for. Helpers spin for
/// `spinNanoseconds` after their last job, then sleep on a semaphore until a call wakes them.
final class SpinningPool: @unchecked Sendable {
    /// The pool, or nil on a single core or with `CKPT_SPINNING_POOL=0` in the environment (every
    /// call then goes to Dispatch, as before the pool: for side-by-side timing).
    static let shared: SpinningPool? = {
        let helpers = ProcessInfo.processInfo.activeProcessorCount - 1
        if ProcessInfo.processInfo.environment["CKPT_SPINNING_POOL"] == "0" { return nil }
        return helpers >= 1 ? SpinningPool(helpers: helpers) : nil
    }()

    /// How long a helper keeps looking for the next call before it sleeps (a forward's gaps between
    /// layers are tens of microseconds; an idle process stops spinning within a few milliseconds).
    static let spinNanoseconds: UInt64 = 2_000_000
    static let indexBits = 22, countShift = 22, generationShift = 44
    static let indexMask = (1 << 22) - 1

    private let ticket = Atomic<Int>(0)
    private let done = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// A helper's flag (1 while it sleeps) and the semaphore it sleeps on.
    private final class Sleeper: Sendable {
        let sleeping = Atomic<Int>(0)
        let wakeUp = DispatchSemaphore(value: 0)
    }
    private let sleepers: [Sleeper]
    /// The current call's body (an `UncheckedSendable<(Int) -> Void>`), valid while its indices run.
    nonisolated(unsafe) private var body: UnsafeRawPointer?

    private init(helpers: Int) {
        sleepers = (0 ..< helpers).map { _ in Sleeper() }
        for h in 0 ..< helpers {
            let box = UncheckedSendable((self, h))
            let thread = Thread { box.value.0.helperLoop(box.value.1) }
            thread.name = "ckpt-kernels-\(h + 1)"
            thread.start()
        }
    }

    /// Runs `body` (pointing at an `UncheckedSendable<(Int) -> Void>`) for `0..<count` on the caller
    /// and the helpers; false, having run nothing, when the pool is in use (a nested or concurrent
    /// call) or `count` does not fit the ticket.
    func run(_ count: Int, body: UnsafeRawPointer) -> Bool {
        guard count <= SpinningPool.indexMask,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        self.body = body
        done.store(0, ordering: .relaxed)
        let generation = (ticket.load(ordering: .relaxed) >> SpinningPool.generationShift) + 1
        let open = (generation & ((1 << 19) - 1)) << SpinningPool.generationShift | count << SpinningPool.countShift
        ticket.store(open, ordering: .sequentiallyConsistent)
        for s in sleepers where s.sleeping.exchange(0, ordering: .sequentiallyConsistent) == 1 { s.wakeUp.signal() }
        let ran = claimAll(open)
        // the helpers' indices: spin, yielding the core once the wait is not short (a helper the
        // host has descheduled, or other processes waiting for this core)
        var spins = 0
        while done.load(ordering: .acquiring) + ran < count {
            spins += 1
            if spins > 256 { sched_yield() }
        }
        self.body = nil
        busy.store(false, ordering: .releasing)
        return true
    }

    /// Claims and runs indices of the call whose ticket opened as `open` until none is left;
    /// returns how many this thread ran.
    private func claimAll(_ open: Int) -> Int {
        let generation = open >> SpinningPool.generationShift
        let count = (open >> SpinningPool.countShift) & SpinningPool.indexMask
        var ran = 0
        var t = ticket.load(ordering: .acquiring)
        while t >> SpinningPool.generationShift == generation && t & SpinningPool.indexMask < count {
            let (exchanged, now) = ticket.compareExchange(expected: t, desired: t + 1, ordering: .acquiringAndReleasing)
            if exchanged {
                if let body { SpinningPool.invoke(body, t & SpinningPool.indexMask) }
                ran += 1
                t += 1
            } else {
                t = now
            }
        }
        return ran
    }

    /// Calls the body at `body` with `index`; every retain and release of the body's context
    /// happens before this returns (so before `done` counts the index).
    @inline(never)
    private static func invoke(_ body: UnsafeRawPointer, _ index: Int) {
        body.assumingMemoryBound(to: UncheckedSendable<(Int) -> Void>.self).pointee.value(index)
    }

    /// A helper: waits for a new generation (spinning, then asleep), claims what it can, repeats.
    private func helperLoop(_ helper: Int) {
        var seen = ticket.load(ordering: .acquiring) >> SpinningPool.generationShift
        while true {
            var t = ticket.load(ordering: .acquiring)
            if t >> SpinningPool.generationShift == seen {
                var start = DispatchTime.now().uptimeNanoseconds
                var spins = 0
                while t >> SpinningPool.generationShift == seen {
                    spins += 1
                    if spins > 256 { sched_yield() }
                    if spins & 63 == 0 && DispatchTime.now().uptimeNanoseconds - start > SpinningPool.spinNanoseconds {
                        let s = sleepers[helper]
                        s.sleeping.store(1, ordering: .sequentiallyConsistent)
                        if ticket.load(ordering: .sequentiallyConsistent) >> SpinningPool.generationShift == seen {
                            s.wakeUp.wait()
                        } else if s.sleeping.exchange(0, ordering: .sequentiallyConsistent) == 0 {
                            // a call saw the flag and signals: take that signal now
                            s.wakeUp.wait()
                        }
                        spins = 0
                        start = DispatchTime.now().uptimeNanoseconds
                    }
                    t = ticket.load(ordering: .acquiring)
                }
            }
            seen = t >> SpinningPool.generationShift
            let ran = claimAll(t & ~SpinningPool.indexMask)
            if ran > 0 { done.add(ran, ordering: .releasing) }
        }
    }
}
