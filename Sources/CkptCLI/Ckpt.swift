import ArgumentParser
import CkptFormat
import CkptTensor
import CkptZoo
import Foundation

/// The `ckpt` command: PyTorch checkpoint surgery without Python.
public struct Ckpt: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ckpt",
        abstract: "Inspect, convert, diff, scan, transplant and fine-tune PyTorch checkpoints without running Python.",
        discussion: """
            A checkpoint is a pickle; ckpt interprets it as data and never runs code from it.

            Exit status, every command: 0 done / clean / equal; 1 different (diff), references code or \
            malformed (scan), a gate not met (transplant --strict, --require-coverage, a failed proof; finetune stopped); 2 a \
            file that cannot be used (missing, malformed, refused, does not fit the model); 64 a usage error.
            """,
        version: "0.1.0",
        subcommands: [Inspect.self, Convert.self, Diff.self, Scan.self, Transplant.self, Finetune.self, Init.self, ZooListing.self, Summary.self, Forward.self, Predict.self, Bench.self]
    )
    public init() {}

    /// Runs the command line; a mistyped subcommand gets the closest name suggested (exit 64).
    public static func runMain() {
        pinOpenBLASPool()
        // a mapped input truncated or rewritten underneath faults on its next read: one line,
        // the temporary output removed, exit 2 (never a crash by signal)
        signal(SIGBUS, inputChangedHandler)
        let args = Array(CommandLine.arguments.dropFirst())
        let names = configuration.subcommands.map { $0._commandName } + ["help"]
        if let first = args.first, !first.hasPrefix("-"), !names.contains(first) {
            let hint = Zoo.closestName(to: first, in: names).map { " did you mean '\($0)'?" } ?? ""
            CLI.printError("unknown subcommand '\(first)';\(hint) subcommands: \(names.dropLast().joined(separator: ", "))")
            Foundation.exit(64)
        }
        main(args)
    }
}

extension Ckpt {
    /// OpenBLAS starts a pool of threads (one per core) as it loads, before `main`, each
    /// allocating a 128 MiB work buffer; ckpt runs OpenBLAS on one thread and splits products
    /// over its own, so the pool only takes cores, and under a memory limit a pool thread whose
    /// allocation fails retries forever (and `exit` waits for it). OpenBLAS reads
    /// OPENBLAS_NUM_THREADS only as it loads: under an address-space limit ckpt starts itself
    /// again with it set to 1, passing the threads asked for (OPENBLAS_NUM_THREADS, else the
    /// cores) in CKPT_BLAS_THREADS. Without a limit the idle pool costs nothing (ckpt calls
    /// OpenBLAS with one thread; the same speed and resident memory were measured both ways),
    /// while the second start costs about 25 ms of every command (inspect 30 -> 55 ms).
    static func pinOpenBLASPool() {
        #if os(Linux)
        guard getenv("CKPT_BLAS_THREADS") == nil else { return }
        let asked = getenv("OPENBLAS_NUM_THREADS").flatMap { Int(String(cString: $0)) }.flatMap { $0 > 0 ? $0 : nil }
        setenv("CKPT_BLAS_THREADS", String(asked ?? ProcessInfo.processInfo.activeProcessorCount), 1)
        if asked == 1 { return }  // the pool is already off
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur == rlim_t.max { return }  // no allocation of the pool can fail
        setenv("OPENBLAS_NUM_THREADS", "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // only reached when exec fails: run on, with the pool
        #endif
    }
}

nonisolated(unsafe) private var inputChangedReported = false

private func inputChangedHandler(_ sig: Int32) {
    // both cores may fault at once: one line is enough
    if inputChangedReported { while true { pause() } }
    inputChangedReported = true
    mappedFiles.writeNames(to: 2, prefix: "ckpt: ", suffix: ": the file changed while ckpt was reading it (truncated or rewritten underneath); nothing was written\n")
    TemporaryFiles.removeAll()
    _exit(2)
}
