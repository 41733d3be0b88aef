@testable import CkptKernels
import Dispatch
import Synchronization
import XCTest

/// `parallelFor` on the spinning pool: every index exactly once, whoever runs it, and calls the
/// pool cannot take (nested, concurrent) still complete on Dispatch.
final class ParallelForTests: XCTestCase {
    /// Runs `parallelFor(count)` and returns how often each index had run when it returned.
    private static func visits(_ count: Int, work: Int = 0) -> [Int] {
        var hits = [Int](repeating: 0, count: count)
        return hits.withUnsafeMutableBufferPointer { hb -> [Int] in
            guard let h = hb.baseAddress else { return [] }
            let box = UncheckedSendable(h)
            parallelFor(count) { i in
                // uneven work, the last index the longest, so helpers and the caller interleave
                // differently from call to call and a caller that returned early sees it unfinished
                var x = 0.0
                for k in 0 ..< (i == count - 1 ? 50 : i % 7) * work { x += Double(k) }
                box.value[i] += x < 0 ? 2 : 1
            }
            return Array(hb)
        }
    }

    func testEveryIndexRunsOnceOverManyCallsOfEverySize() {
        XCTAssertNotNil(SpinningPool.shared, "these tests need a machine with at least two cores")
        for round in 0 ..< 300 {
            let count = [2, 3, 5, 17, 64, 1000][round % 6]
            let hits = ParallelForTests.visits(count, work: round % 3 == 0 ? 200 : 0)
            XCTAssertEqual(hits, [Int](repeating: 1, count: count), "round \(round), count \(count)")
        }
    }

    func testReturnsOnlyAfterTheHelpersIndicesFinished() {
        for _ in 0 ..< 20 {
            let started = Atomic<Int>(0), finished = Atomic<Int>(0)
            let deadline = DispatchTime.now().uptimeNanoseconds + 1_000_000_000
            parallelFor(2) { i in
                if i == 1 {
                    started.store(1, ordering: .sequentiallyConsistent)
                    usleep(3000)
                    finished.store(1, ordering: .sequentiallyConsistent)
                } else {
                    // index 0 waits (at most a second) until another thread runs index 1
                    while started.load(ordering: .sequentiallyConsistent) == 0 && DispatchTime.now().uptimeNanoseconds < deadline {}
                }
            }
            XCTAssertEqual(started.load(ordering: .sequentiallyConsistent), 1, "index 1 never ran beside index 0")
            XCTAssertEqual(finished.load(ordering: .sequentiallyConsistent), 1, "returned before index 1 finished")
        }
    }

    func testCallsAfterTheHelpersFellAsleepStillRunEveryIndex() {
        for _ in 0 ..< 3 {
            usleep(UInt32(SpinningPool.spinNanoseconds / 1000) * 3)
            XCTAssertEqual(ParallelForTests.visits(8), [Int](repeating: 1, count: 8))
        }
    }

    func testNestedCallsRunEveryInnerIndex() {
        let outer = 6, inner = 9
        var hits = [Int](repeating: 0, count: outer * inner)
        hits.withUnsafeMutableBufferPointer { hb in
            guard let h = hb.baseAddress else { return }
            let box = UncheckedSendable(h)
            parallelFor(outer) { i in
                parallelFor(inner) { j in box.value[i * inner + j] += 1 }
            }
        }
        XCTAssertEqual(hits, [Int](repeating: 1, count: outer * inner))
    }

    func testConcurrentCallersEachGetTheirOwnIndices() {
        let callers = 4, count = 50, rounds = 40
        var sums = [Int](repeating: 0, count: callers)
        sums.withUnsafeMutableBufferPointer { sb in
            guard let s = sb.baseAddress else { return }
            let box = UncheckedSendable(s)
            DispatchQueue.concurrentPerform(iterations: callers) { c in
                var total = 0
                for _ in 0 ..< rounds {
                    let hits = ParallelForTests.visits(count)
                    total += hits.reduce(0, +) + (hits.allSatisfy { $0 == 1 } ? 0 : 1_000_000)
                }
                box.value[c] = total
            }
        }
        XCTAssertEqual(sums, [Int](repeating: count * rounds, count: callers))
    }

    func testParallelRangesCoverTheExtentInMultiples() {
        var seen = [Int](repeating: 0, count: 103)
        seen.withUnsafeMutableBufferPointer { sb in
            guard let s = sb.baseAddress else { return }
            let box = UncheckedSendable(s)
            parallelRanges(103, lanes: 4, multiple: 8) { r in
                // a range off a multiple of 8 marks its indices twice
                for i in r { box.value[i] += r.lowerBound % 8 == 0 ? 1 : 2 }
            }
        }
        XCTAssertEqual(seen, [Int](repeating: 1, count: 103))
    }
}
