import Foundation

/// The batches of one epoch in order, built ahead of the consumer by worker threads.
///
/// Workers take batch numbers in order and never run more than `prefetchBatches` ahead of the
/// consumer, so at most that many batches (plus the one being consumed) are in memory; the
/// consumer receives them in order whatever order they finish in. Ending early (`cancel()`, or
/// dropping the object) stops the workers after their current batch.
/// PyTorch counterpart: `iter(DataLoader(..., num_workers=n, prefetch_factor=k))`.
public final class EpochBatches: Sendable {
    private let queue: Queue

    init(loader: BatchLoader, epoch: Int) {
        queue = Queue(loader: loader, epoch: epoch)
        // the workers hold the queue, not this object, so dropping it cancels them
        for _ in 0 ..< min(loader.options.workers, queue.total) {
            let thread = Thread { [queue] in queue.work() }
            thread.name = "ckpt-data"
            thread.start()
        }
    }

    deinit {
        queue.cancel()
    }

    /// Batches in the epoch.
    public var count: Int { queue.total }

    /// The most batches ever built or being built ahead of the consumer at once (at most
    /// `prefetchBatches`): the memory bound, observed.
    public var maximumAhead: Int { queue.withLock { queue.mostAhead } }

    /// The next batch, `nil` after the last (or after `cancel()`).
    /// - Throws: the batch's `DataError` (with `BadImagePolicy.fail`); later calls go on with
    ///   the following batches.
    public func next() throws -> ImageBatch? {
        try queue.next()
    }

    /// Stops the workers after their current batch and waits for them; `next()` then returns nil.
    public func cancel() {
        queue.cancel()
    }

    /// The state shared with the workers, every `var` guarded by `condition`.
    final class Queue: @unchecked Sendable {
        let loader: BatchLoader
        let epoch: Int
        let order: [Int]
        let total: Int
        private let condition = NSCondition()
        private var nextToStart = 0
        private var nextToDeliver = 0
        private var ready: [Int: Result<ImageBatch, Error>] = [:]
        private var cancelled = false
        private var liveWorkers: Int
        fileprivate var mostAhead = 0

        init(loader: BatchLoader, epoch: Int) {
            self.loader = loader
            self.epoch = epoch
            self.order = loader.order(epoch: epoch)
            self.total = loader.batchesPerEpoch
            self.liveWorkers = min(loader.options.workers, total)
        }

        func withLock<T>(_ body: () -> T) -> T {
            condition.lock()
            defer { condition.unlock() }
            return body()
        }

        func next() throws -> ImageBatch? {
            if loader.options.workers == 0 {
                // no threads: built here, in the same order
                let index: Int? = withLock {
                    guard nextToDeliver < total, !cancelled else { return nil }
                    nextToDeliver += 1
                    return nextToDeliver - 1
                }
                guard let index else { return nil }
                return try loader.batch(epoch: epoch, index: index, order: order)
            }
            condition.lock()
            while nextToDeliver < total, !cancelled, ready[nextToDeliver] == nil { condition.wait() }
            guard nextToDeliver < total, !cancelled, let result = ready.removeValue(forKey: nextToDeliver) else {
                condition.unlock()
                return nil
            }
            nextToDeliver += 1
            condition.broadcast()
            condition.unlock()
            return try result.get()
        }

        func cancel() {
            condition.lock()
            cancelled = true
            ready.removeAll()
            condition.broadcast()
            while liveWorkers > 0 { condition.wait() }
            condition.unlock()
        }

        func work() {
            while true {
                condition.lock()
                while !cancelled, nextToStart < total, nextToStart - nextToDeliver >= loader.options.prefetchBatches {
                    condition.wait()
                }
                if cancelled || nextToStart >= total {
                    liveWorkers -= 1
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                let index = nextToStart
                nextToStart += 1
                mostAhead = max(mostAhead, nextToStart - nextToDeliver)
                condition.unlock()
                let result = Result { try loader.batch(epoch: epoch, index: index, order: order) }
                condition.lock()
                if !cancelled { ready[index] = result }
                condition.broadcast()
                condition.unlock()
            }
        }
    }
}
