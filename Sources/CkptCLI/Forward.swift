import ArgumentParser
import CkptFormat
import CkptKernels
import CkptNN
import CkptSurgery
import CkptTensor
import CkptZoo
import Foundation

// Shapes follow PyTorch's NCHW layout: N images in a batch, C channels, H rows, W columns.

/// `ckpt forward MODEL --weights W --input IN -o OUT`: an eval-mode forward pass on CPU.
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a zoo model on inputs from a file, in eval mode, and write its output (or one layer's).",
        discussion: """
            --weights is any checkpoint ckpt reads; its state dict is found as inspect finds it (nested under `model`, \
            `state_dict`, …) and `module.` / `_orig_mod.` prefixes are removed. The load is strict, as \
            load_state_dict(strict=True): missing, unexpected or mismatched keys stop the command (exit 2), one \
            line per kind; --non-strict loads what fits and reports the rest on stderr. Without --num-classes the \
            class count is read from the weights' classifier when the zoo's default does not fit. --input holds \
            one batched NCHW tensor per model input, named x (x1 and x2 for segnet); --output (.pth, or \
            .safetensors by extension) gets the output under the key y. Equivalent to model.eval(); y = model(*inputs) under \
            torch.no_grad().
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Checkpoint holding the model's state dict.")
    var weights: String

    @Option(name: .long, help: "File (.pth or .safetensors) with one float32 NCHW tensor per model input (x; x1, x2).")
    var input: String

    @Option(name: .shortAndLong, help: "Output file for the tensor y: .safetensors, or anything else for a zip .pth.")
    var output: String

    @Option(name: .long, help: "Write this module's output instead of the model's (a dotted name: features.26, layer3.1, enc2).")
    var layer: String?

    @Flag(name: .long, help: "Load the weights that fit and report missing, unexpected and mismatched keys instead of failing.")
    var nonStrict = false

    @Flag(name: .long, help: "Print a JSON report.")
    var json = false

    @OptionGroup var read: ReadOptions

    func run() throws {
        try CLI.run {
            try CLI.prepareKernels()
            let entry = try options.entry()
            let located = KeyAnalysis.locateStateDict(try CLI.load(weights, read))
            let (model, classes, stateDict) = try Forward.build(entry, numClasses: options.numClasses, fitting: located)
            if let layer, !model.layerPaths.contains(layer) {
                throw NNError.unknownLayer(name: layer, available: model.layerPaths)
            }
            let plan = try ModelFitting.loadPlan(stateDict, into: model.parameterSpecs())
            if !plan.isExact {
                if !nonStrict {
                    for line in PlanReport.loadProblems(plan, includingPartialModules: false) { CLI.printError("\(weights) does not fit \(entry.name): \(line)") }
                    throw ExitCode(2)
                }
                for line in PlanReport.loadProblems(plan, includingPartialModules: true) {
                    CLI.printError("warning: \(weights) does not fit \(entry.name): \(line) (--non-strict: kept)")
                }
            }
            // what the plan takes: copied tensors, and zero counters for older batch norms
            var taken = StateDict()
            for e in plan.entries {
                if case let .copy(from) = e.action, let t = stateDict[from] { taken[e.spec.key] = t }
                if e.action == .fill { taken[e.spec.key] = try Tensor(dtype: .int64, shape: e.spec.shape, bytes: [UInt8](repeating: 0, count: 8 * e.spec.elementCount)) }
            }
            let report: LoadReport
            do {
                report = try model.load(stateDict: taken, strictness: nonStrict ? .lenient : .strict)
            } catch NNError.load(let report) {
                CLI.printError("\(weights) does not fit \(entry.name): \(report.problemSummary)")
                throw ExitCode(2)
            }

            let file = try CLI.load(input, read)
            let inputs = try model.inputs(from: file.tensors.map { (key: $0.path, tensor: $0.tensor) })
            for (i, x) in inputs.enumerated() where i < entry.defaultInputShapes.count {
                let channels = entry.defaultInputShapes[i][0]
                if x.shape[1] != channels {
                    throw NNError.inputShape(name: model.inputNames[i], expected: "[N, \(channels), H, W] (\(entry.name) takes \(channels) channel\(channels == 1 ? "" : "s"))", got: x.shape)
                }
            }
            let start = Date()
            let y = try model.evaluate(inputs, capturing: layer)
            let seconds = Date().timeIntervalSince(start)

            let out = Checkpoint(root: .dict(PyDict(items: [(.string("y"), .tensor(try y.tensor()))], kind: .dict)), info: FormatInfo(format: .zip))
            try CheckpointWriter.write(out, to: output, forbidding: [weights, input])
            let format = CheckpointWriter.format(forPath: output)
            let what = layer.map { "layer \($0)" } ?? "output"
            if json {
                CLI.printJSON(.object([
                    ("model", .string(entry.name)), ("num_classes", .int(classes)), ("weights", .string(weights)),
                    ("state_dict_root", .string(located.rootPath)),
                    ("wrapper_prefix", located.wrapperPrefix.map { .string($0) } ?? .null),
                    ("loaded", .int(report.loaded.count)), ("missing", .array(plan.missing.map { .string($0.spec.key) })),
                    ("unexpected", .array(plan.unused.map { .string($0.key) })),
                    ("mismatched", .array(plan.mismatched.map { e in
                        var got: [Int] = []
                        if case let .mismatch(_, s) = e.action { got = s }
                        return .object([("key", .string(e.spec.key)), ("model", .array(e.spec.shape.map { .int($0) })), ("checkpoint", .array(got.map { .int($0) }))])
                    })),
                    ("not_loaded", .array(plan.reinitialized.map { .string($0.spec.key) })),
                    ("input", .string(input)), ("input_shapes", .array(inputs.map { .array($0.shape.map { .int($0) }) })),
                    ("layer", layer.map { .string($0) } ?? .null),
                    ("output", .string(output)), ("output_format", .string(format.rawValue)),
                    ("output_shape", .array(y.shape.map { .int($0) })), ("max_abs", .double(Double(y.maxMagnitude))),
                    ("seconds", .double(seconds)),
                ]))
            } else {
                var source = "\(report.loaded.count) tensors from \(weights)"
                if !located.rootPath.isEmpty { source += " [\(located.rootPath)]" }
                if let p = located.wrapperPrefix, stateDict.first?.key != located.raw.first?.key { source += " without '\(p)'" }
                print("wrote \(output) (\(format.rawValue)): y \(CLI.shape(y.shape)), \(entry.name) \(what) (\(classes) classes, \(source)) in \(String(format: "%.3f", seconds)) s")
            }
        }
    }

    /// The model with zero weights, ready to load, and the state dict keyed for it: `numClasses`
    /// outputs when given, else the class count the weights' head has, else the zoo's default.
    /// - Throws: `ZooError` only for an unknown model or a bad class count.
    static func build(_ entry: Zoo.Entry, numClasses: Int?, fitting located: LocatedStateDict) throws
        -> (model: Module, classes: Int, stateDict: StateDict) {
        let defaultSpecs = try Zoo.specification(entry.name).parameterSpecs
        let stateDict = ModelFitting.stateDict(located, for: defaultSpecs.map(\.key))
        let head = Set(try Zoo.headKeys(entry.name))
        let n = numClasses ?? ModelFitting.classCount(head: defaultSpecs.filter { head.contains($0.key) }, in: stateDict) ?? entry.defaultClassCount
        return (try Zoo.make(entry.name, numClasses: n, initialize: false), n, stateDict)
    }
}
