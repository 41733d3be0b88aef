internal import COpenBLAS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation

/// Single-precision matrix multiply on OpenBLAS: the only file that talks to BLAS.
///
/// Every matrix is row-major. PyTorch counterpart: `at::native::cpublas::gemm`.
public enum Gemm {
    /// `C = alpha · op(A) · op(B) + beta · C` where `op(A)` is `m×k`, `op(B)` is `k×n`, `C` is `m×n`.
    ///
    /// `lda`, `ldb`, `ldc` are the row strides of the matrices as stored (before transposition).
    /// The caller guarantees the pointers cover the described matrices.
    public static func multiply(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // BLAS leaves C·beta; make the empty product explicit so beta = 0 clears garbage.
            for i in 0 ..< m {
                for j in 0 ..< n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] }
            }
            return
        }
        // One row of A (a batch-1 linear layer): a matrix-vector product, bound by reading B once,
        // with B's rows (columns of the result) split over our threads
        if m == 1 && !transposeA && n >= 256 && n * k >= 1 << 18 {
            let box = UncheckedSendable((a, b, c))
            parallelRanges(n, lanes: splitting ? workers : 1, multiple: 16) { range in
                let (a, b, c) = box.value
                let j0 = range.lowerBound, j1 = range.upperBound
                if transposeB {
                    // B is n×k: y[j] = Σ B[j, i] a[i]
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(j1 - j0), blasint(k), alpha,
                                b + j0 * ldb, blasint(ldb), a, 1, beta, c + j0, 1)
                } else {
                    // B is k×n: y[j] = Σ B[i, j] a[i]
                    cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(j1 - j0), alpha,
                                b + j0, blasint(ldb), a, 1, beta, c + j0, 1)
                }
            }
            return
        }
        // Split wide products by columns over our own threads with OpenBLAS single-threaded:
        // its worker threads otherwise spin (sched_yield) between calls and take the cores
        // from the transforms and unfolds that run between GEMMs.
        if splitting && workers > 1 && m * n * k >= 1 << 21 {
            // wide products by columns (A is packed by each lane), thin ones by rows of A and C
            let byColumns = n >= 64 * workers || m < 32 * workers
            let box = UncheckedSendable((a, b, c))
            parallelRanges(byColumns ? n : m, lanes: workers, multiple: 16) { range in
                let (a, b, c) = box.value
                let i0 = range.lowerBound, i1 = range.upperBound
                if byColumns {
                    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                                blasint(m), blasint(i1 - i0), blasint(k), alpha,
                                a, blasint(lda), b + (transposeB ? i0 * ldb : i0), blasint(ldb), beta, c + i0, blasint(ldc))
                } else {
                    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                                blasint(i1 - i0), blasint(n), blasint(k), alpha,
                                a + (transposeA ? i0 : i0 * lda), blasint(lda), b, blasint(ldb), beta, c + i0 * ldc, blasint(ldc))
                }
            }
            return
        }
        cblas_sgemm(CblasRowMajor,
                    transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha,
                    a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Threads one call may use (`torch.get_num_threads`); OpenBLAS itself always runs
    /// single-threaded and `multiply` splits the work over our threads.
    public static var threadCount: Int { workers }

    /// Runs `body` with each `multiply` on one thread, so callers can run independent GEMMs on
    /// separate cores; restores the previous setting afterwards. Not reentrant across threads.
    public static func withThreadCount<R>(_ count: Int, _ body: () throws -> R) rethrows -> R {
        _ = workers  // pins OpenBLAS to one thread before any call
        let previous = splitting
        splitting = count > 1
        defer { splitting = previous }
        return try body()
    }

    /// False inside `withThreadCount(1)`: the caller already runs one product per core.
    static var splitsWork: Bool { splitting }

    /// Sets the number of threads one call may use (`torch.set_num_threads` for BLAS work).
    public static func setThreadCount(_ count: Int) {
        workers = max(1, count)
    }

    /// Address space one thread calling OpenBLAS needs for its work buffer: BUFFER_SIZE of
    /// OpenBLAS's x86-64 builds (128 MiB) plus a page. OpenBLAS allocates it on a thread's first
    /// call and, when the allocation fails, retries forever (`blas_memory_alloc`).
    public static let workspacePerThread = (128 << 20) + 4096

    /// Makes sure OpenBLAS can get its work buffers before any model runs, so a memory limit
    /// ends in an error instead of OpenBLAS spinning on a failed allocation: checks that the
    /// address space for one buffer per thread is free (using fewer threads when only fewer
    /// fit), then has each thread make one product so OpenBLAS allocates its buffers now.
    /// - Throws: `GemmError.workspace` when not even one thread's buffer fits.
    public static func prepare() throws {
        if prepared { return }
        var lanes = workers
        while lanes > 0, !addressSpaceFree(lanes * workspacePerThread) { lanes -= 1 }
        guard lanes > 0 else {
            throw GemmError.workspace(bytes: workspacePerThread)
        }
        workers = lanes
        let count = lanes
        // every lane multiplies at once (each waits, at most a second, for the others to
        // arrive), so OpenBLAS takes one buffer per lane now rather than in the middle of a model
        let n = 256
        let a = [Float](repeating: 1, count: n * n)
        let box = UncheckedSendable(a)
        let arrivals = Arrivals()
        DispatchQueue.concurrentPerform(iterations: count) { _ in
            arrivals.arriveAndWait(for: count, atMost: 1)
            var c = [Float](repeating: 0, count: n * n)
            box.value.withUnsafeBufferPointer { p in
                guard let m = p.baseAddress else { return }
                c.withUnsafeMutableBufferPointer { q in
                    guard let out = q.baseAddress else { return }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(n), blasint(n), blasint(n), 1,
                                m, blasint(n), m, blasint(n), 0, out, blasint(n))
                }
            }
        }
        prepared = true
    }

    /// True when `bytes` of address space can be mapped now (reserved without touching memory,
    /// then released).
    private static func addressSpaceFree(_ bytes: Int) -> Bool {
        guard let m = mmap(nil, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), m != MAP_FAILED else { return false }
        munmap(m, bytes)
        return true
    }

    nonisolated(unsafe) private static var prepared = false

    // written only outside parallel regions (setup, withThreadCount), read inside them. The
    // threads come from CKPT_BLAS_THREADS (the CLI sets it from OPENBLAS_NUM_THREADS or the
    // cores before OpenBLAS loads with a pool of one), never more than the cores we may use.
    nonisolated(unsafe) private static var workers: Int = {
        // the cores this process may run on (its affinity mask, as taskset or a container sets it)
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let asked = getenv("CKPT_BLAS_THREADS").flatMap { Int(String(cString: $0)) } ?? Int(openblas_get_num_threads())
        openblas_set_num_threads(1)
        return max(1, min(asked, cores))
    }()

    nonisolated(unsafe) private static var splitting = true
}

/// A count of threads that have arrived, for `Gemm.prepare`'s rendezvous.
private final class Arrivals: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    /// Counts this thread in, then waits until `lanes` have arrived or `seconds` have passed.
    func arriveAndWait(for lanes: Int, atMost seconds: Double) {
        lock.lock()
        count += 1
        lock.unlock()
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < deadline {
            lock.lock()
            let all = count >= lanes
            lock.unlock()
            if all { return }
            usleep(100)
        }
    }
}

/// Failures of the BLAS layer.
public enum GemmError: Error, CustomStringConvertible {
    /// OpenBLAS could not get the address space for its work buffer.
    case workspace(bytes: Int)

    public var description: String {
        switch self {
        case let .workspace(bytes):
            return "OpenBLAS needs \(bytes >> 20) MiB of address space for its work buffer and cannot get it (is the virtual memory limit, ulimit -v, too low?)"
        }
    }
}
