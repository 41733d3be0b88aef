import ArgumentParser
import CkptFormat
import CkptKernels
import CkptNN
import CkptZoo
import Foundation

// Shapes follow PyTorch's NCHW layout: N images in a batch, C channels, H rows, W columns.

/// `ckpt bench forward MODEL`: eval-mode forward speed on random weights and inputs.
struct BenchForward: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Time eval-mode forward passes of a zoo model on random weights and inputs.",
        discussion: """
            Weights are initialised as torchvision initialises them, inputs are uniform in [-1, 1). One \
            warm-up pass, then --iterations timed passes: ms_per_batch is the best of them and \
            median_ms_per_batch their median. GFLOP/s counts 2 flops per multiply-add performed (`ckpt summary`'s \
            mult-adds, except that transposed convolutions count the multiplications they do rather than \
            torchinfo's larger figure). \
            peak_rss_bytes is the process's maximum resident set (getrusage), model and buffers included.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Images per batch.")
    var batch = 1

    @Option(name: .long, help: "Height and width of every input (default: the zoo's, 224 for torchvision models).")
    var size: Int?

    @Option(name: .long, help: "Timed passes after the warm-up.")
    var iterations = 5

    @Flag(name: .long, help: "Also time every layer (and fused kernel), keeping each one's fastest call; list where the time goes.")
    var profile = false

    @Flag(name: .long, help: "Run every product on OpenBLAS, not ckpt's own AVX-512 kernel (for comparison).")
    var openblasOnly = false

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be positive, got \(batch)") }
        if iterations < 1 { throw ValidationError("--iterations must be positive, got \(iterations)") }
        if let size, size < 1 { throw ValidationError("--size must be positive, got \(size)") }
    }

    func run() throws {
        // passes allocate and free the same activations: reuse the freed pages rather than fault in new ones
        CLI.reuseFreedMemory()
        try CLI.run {
            try CLI.prepareKernels()
            let entry = try options.entry()
            if openblasOnly { Microkernel.isEnabled = false }
            let model = try Zoo.make(entry.name, numClasses: options.numClasses, seed: 0, initialize: true)
            let inputs = entry.randomInputs(batch: batch, size: size, seed: 1)
            // mult-adds grow linearly with the batch: trace one image, not the whole batch
            let multAdds = try model.summarize(inputShapes: entry.inputShapes(batch: 1, size: size)).arithmeticMultAdds * batch
            _ = try model.evaluate(inputs, checkFinite: false)
            var times: [Double] = []
            var bestProfile: [ForwardContext.ProfileEntry] = []
            for _ in 0 ..< iterations {
                let context = ForwardContext(profiling: profile)
                let start = Date()
                _ = try model.evaluate(inputs, context: context, checkFinite: false)
                let elapsed = Date().timeIntervalSince(start)
                BenchForward.keepFastest(&bestProfile, context.profile ?? [])
                times.append(elapsed)
            }
            times.sort()
            let best = times[0]
            let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
            let gflops = 2 * Double(multAdds) / best / 1e9
            let shapes = inputs.map(\.shape)
            let rss = BenchForward.peakResidentBytes()
            if json {
                CLI.printJSON(.object([
                    ("model", .string(entry.name)), ("batch", .int(batch)),
                    ("input_shapes", .array(shapes.map { .array($0.map { .int($0) }) })),
                    ("iterations", .int(iterations)),
                    ("ms_per_batch", .double(best * 1000)), ("median_ms_per_batch", .double(median * 1000)),
                    ("images_per_second", .double(Double(batch) / best)),
                    ("mult_adds", .int(multAdds)), ("gflop_per_second", .double(gflops)),
                    ("threads", .int(ProcessInfo.processInfo.activeProcessorCount)),
                    ("peak_rss_bytes", .int(rss)),
                ] + (profile ? [("profile", .array(bestProfile.map { e in
                    .object([("path", .string(e.path)), ("type", .string(e.typeName)),
                             ("output_shape", .array(e.outputShape.map { .int($0) })), ("ms", .double(e.seconds * 1000))])
                }))] : [])))
            } else {
                print(String(format: "%@ %@: %.2f ms per batch (median %.2f), %.2f images/s, %.1f GFLOP/s, peak RSS %@",
                             entry.name, shapes.map(CLI.shape).joined(separator: " "), best * 1000, median * 1000,
                             Double(batch) / best, gflops, CLI.bytes(rss)))
                if profile { BenchForward.printProfile(bestProfile, total: best) }
            }
        }
    }

    /// Each layer's fastest call over the passes (passes run the same calls in the same order).
    static func keepFastest(_ best: inout [ForwardContext.ProfileEntry], _ calls: [ForwardContext.ProfileEntry]) {
        if best.isEmpty {
            best = calls
        } else if calls.count == best.count {
            for i in calls.indices where calls[i].seconds < best[i].seconds { best[i].seconds = calls[i].seconds }
        }
    }

    /// Time by layer type, then the slowest layers, of one profiled pass lasting `total` seconds.
    static func printProfile(_ entries: [ForwardContext.ProfileEntry], total: Double) {
        var byType: [String: (seconds: Double, calls: Int)] = [:]
        for e in entries { byType[e.typeName, default: (0, 0)].seconds += e.seconds; byType[e.typeName, default: (0, 0)].calls += 1 }
        let accounted = entries.reduce(0) { $0 + $1.seconds }
        print("\nby type (fastest call of each layer):")
        for (type, v) in byType.sorted(by: { $0.value.seconds > $1.value.seconds }) {
            print(String(format: "  %-26@ %5d calls %9.2f ms %5.1f%%", type, v.calls, v.seconds * 1000, 100 * v.seconds / total))
        }
        print(String(format: "  %-26@ %5@       %9.2f ms %5.1f%%", "(outside layers)", "", (total - accounted) * 1000,
                     100 * (total - accounted) / total))
        print("slowest layers:")
        for e in entries.sorted(by: { $0.seconds > $1.seconds }).prefix(15) {
            print(String(format: "  %-22@ %-26@ %-18@ %8.2f ms", e.path, e.typeName, CLI.shape(e.outputShape), e.seconds * 1000))
        }
    }

    /// The process's peak resident set in bytes (`ru_maxrss`, kilobytes on Linux).
    static func peakResidentBytes() -> Int {
        var usage = rusage()
        #if os(Linux)
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
        return usage.ru_maxrss * 1024
        #else
        guard getrusage(RUSAGE_SELF, &usage) == 0 else { return 0 }
        return usage.ru_maxrss
        #endif
    }
}
