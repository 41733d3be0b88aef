import ArgumentParser
import CkptKernels
import CkptNN
import CkptTrain
import CkptZoo
import Foundation

// Shapes follow PyTorch's NCHW layout: N images in a batch, C channels, H rows, W columns.

/// `ckpt bench train MODEL`: whole training steps (forward, loss, backward, optimizer) on random
/// weights, inputs and labels.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time whole training steps of a zoo model on random weights, inputs and labels.",
        discussion: """
            One step is what a PyTorch loop does per batch: zero the gradients, a training-mode forward, \
            cross-entropy against random labels (per pixel for segnet), the backward, and the optimizer's \
            update. One warm-up step, then --iterations timed steps: ms_per_step is the fastest and \
            median_ms_per_step their median. --train names what trains (module paths or keys, comma \
            separated, e.g. fc or layer4,fc); the rest is frozen, its batch norms in eval mode, and the \
            backward stops at the first layer that trains. GFLOP/s counts 2 flops per multiply-add: the \
            forward's, plus a weight gradient for every layer that trains and an input gradient for every \
            layer after the first that trains. peak_rss_bytes is the process's maximum resident set.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Images per batch.")
    var batch = 16

    @Option(name: .long, help: "Height and width of every input (default: the zoo's, 224 for torchvision models).")
    var size: Int?

    @Option(name: .long, help: "What trains: module paths or keys, comma separated (default: everything).")
    var train: String?

    @Option(name: .long, help: "sgd (momentum 0.9) or adamw.")
    var optimizer = "sgd"

    @Option(name: .long, help: "Learning rate (default: 0.01 for sgd, 0.001 for adamw).")
    var lr: Double?

    @Option(name: .long, help: "Timed steps after the warm-up.")
    var iterations = 3

    @Flag(name: .long, help: "Also time every layer's forward and backward, keeping each one's fastest call.")
    var profile = false

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be positive, got \(batch)") }
        if iterations < 1 { throw ValidationError("--iterations must be positive, got \(iterations)") }
        if let size, size < 1 { throw ValidationError("--size must be positive, got \(size)") }
        if !["sgd", "adamw"].contains(optimizer) { throw ValidationError("--optimizer must be sgd or adamw, got '\(optimizer)'") }
    }

    func run() throws {
        CLI.reuseFreedMemory()
        try CLI.run {
            try CLI.prepareKernels()
            let entry = try options.entry()
            let model = try Zoo.make(entry.name, numClasses: options.numClasses, seed: 0, initialize: true)
            let selection: TrainableSelection = train.map {
                .only($0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
            } ?? .all
            let trainable = try selection.apply(to: model)
            let inputs = entry.randomInputs(batch: batch, size: size, seed: 1)
            let summary = try model.summarize(inputShapes: entry.inputShapes(batch: 1, size: size))
            let multAdds = BenchTrain.trainingMultAdds(summary) * batch
            model.setTraining(true)
            let params = ParameterGroup.trainableParameters(of: model)
            let opt: any Optimizer = optimizer == "sgd"
                ? try SGD(parameters: params, learningRate: lr ?? 0.01, momentum: 0.9)
                : try AdamW(parameters: params, learningRate: lr ?? 1e-3)
            let trainer = Trainer(model: model, optimizer: opt)
            let classes = options.numClasses ?? entry.defaultClassCount
            var rng = SeededGenerator(seed: 2)
            let outputCount = entry.family == "segnet" ? batch * inputs[0].shape[2] * inputs[0].shape[3] : batch
            let targets = (0 ..< outputCount).map { _ in Int.random(in: 0 ..< classes, using: &rng) }
            var outcome = try trainer.step(inputs: inputs, targets: targets)
            var times: [Double] = []
            var bestProfile: [ForwardContext.ProfileEntry] = []
            for _ in 0 ..< iterations {
                let start = Date()
                outcome = try trainer.step(inputs: inputs, targets: targets, profiling: profile)
                times.append(Date().timeIntervalSince(start))
                BenchForward.keepFastest(&bestProfile, outcome.profile)
            }
            times.sort()
            let best = times[0]
            let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
            let gflops = 2 * Double(multAdds) / best / 1e9
            let rss = BenchForward.peakResidentBytes()
            let shapes = inputs.map(\.shape)
            if json {
                CLI.printJSON(.object([
                    ("model", .string(entry.name)), ("batch", .int(batch)),
                    ("input_shapes", .array(shapes.map { .array($0.map { .int($0) }) })),
                    ("optimizer", .string(optimizer)), ("trainable_tensors", .int(trainable.count)),
                    ("iterations", .int(iterations)),
                    ("ms_per_step", .double(best * 1000)), ("median_ms_per_step", .double(median * 1000)),
                    ("images_per_second", .double(Double(batch) / best)),
                    ("loss", .double(Double(outcome.loss))),
                    ("mult_adds", .int(multAdds)), ("gflop_per_second", .double(gflops)),
                    ("activation_bytes", .int(outcome.tapeBytes)),
                    ("threads", .int(ProcessInfo.processInfo.activeProcessorCount)),
                    ("peak_rss_bytes", .int(rss)),
                ] + (profile ? [("profile", .array(bestProfile.map { e in
                    .object([("path", .string(e.path)), ("type", .string(e.typeName)),
                             ("output_shape", .array(e.outputShape.map { .int($0) })), ("ms", .double(e.seconds * 1000))])
                }))] : [])))
            } else {
                print(String(format: "%@ %@ (%@, %d tensors train): %.1f ms per step (median %.1f), %.2f images/s, %.1f GFLOP/s, loss %.4f, activations %@, peak RSS %@",
                             entry.name, shapes.map(CLI.shape).joined(separator: " "), optimizer, trainable.count, best * 1000,
                             median * 1000, Double(batch) / best, gflops, outcome.loss, CLI.bytes(outcome.tapeBytes), CLI.bytes(rss)))
                if profile { BenchForward.printProfile(bestProfile, total: best) }
            }
        }
    }

    /// Multiply-adds of one training step for one image: the forward's, a weight gradient for each
    /// leaf with trainable parameters, an input gradient for each leaf after the first such leaf.
    static func trainingMultAdds(_ summary: ModelSummary) -> Int {
        var total = 0
        var reached = false
        for row in summary.rows where row.isLeaf {
            total += row.multAdds
            if row.trainableParameterCount > 0 {
                total += row.multAdds
                if reached { total += row.multAdds }
                reached = true
            } else if reached {
                total += row.multAdds
            }
        }
        return total
    }
}
