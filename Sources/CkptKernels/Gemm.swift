internal import COpenBLAS

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

    // written only outside parallel regions (setup, withThreadCount), read inside them
    nonisolated(unsafe) private static var workers: Int = {
        let count = Int(openblas_get_num_threads())
        openblas_set_num_threads(1)
        return max(1, count)
    }()
    nonisolated(unsafe) private static var splitting = true
}
