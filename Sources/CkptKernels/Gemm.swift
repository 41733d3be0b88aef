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
        cblas_sgemm(CblasRowMajor,
                    transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha,
                    a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Number of threads OpenBLAS uses for one call.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// Runs `body` with OpenBLAS single- or few-threaded, so callers can run independent GEMMs on
    /// separate cores; restores the previous count afterwards. Not reentrant across threads.
    public static func withThreadCount<R>(_ count: Int, _ body: () throws -> R) rethrows -> R {
        let previous = threadCount
        setThreadCount(count)
        defer { setThreadCount(previous) }
        return try body()
    }

    /// Sets the number of threads OpenBLAS uses (`torch.set_num_threads` for BLAS work).
    public static func setThreadCount(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
    }
}
