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
            let entry = try options.entry()
            let located = KeyAnalysis.locateStateDict(try CLI.load(weights, read))
            let (model, classes, keyed) = try Forward.build(entry, numClasses: options.numClasses, fitting: located)
            var stateDict = keyed
            if let layer, !model.layerPaths.contains(layer) {
                throw NNError.unknownLayer(name: layer, available: model.layerPaths)
            }
            stateDict += try Forward.defaultCounters(model, missingFrom: stateDict)
            let report: LoadReport
            do {
                report = try model.load(stateDict: stateDict, strictness: nonStrict ? .lenient : .strict)
            } catch NNError.load(let report) {
                for line in Forward.problems(report) { CLI.printError("\(weights) does not fit \(entry.name): \(line)") }
                throw ExitCode(2)
            }
            if !report.isExact {
                for line in Forward.problems(report) { CLI.printError("warning: \(weights) does not fit \(entry.name): \(line) (--non-strict: kept)") }
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
                    ("loaded", .int(report.loaded.count)), ("missing", .array(report.missing.map { .string($0.key) })),
                    ("unexpected", .array(report.unexpected.map { .string($0.key) })),
                    ("mismatched", .array(report.mismatched.map { .object([
                        ("key", .string($0.key)), ("model", .array($0.expected.map { .int($0) })), ("checkpoint", .array($0.got.map { .int($0) })),
                    ]) })),
                    ("input", .string(input)), ("input_shapes", .array(inputs.map { .array($0.shape.map { .int($0) }) })),
                    ("layer", layer.map { .string($0) } ?? .null),
                    ("output", .string(output)), ("output_format", .string(format.rawValue)),
                    ("output_shape", .array(y.shape.map { .int($0) })), ("max_abs", .double(Double(y.maxMagnitude))),
                    ("seconds", .double(seconds)),
                ]))
            } else {
                var source = "\(report.loaded.count) tensors from \(weights)"
                if !located.rootPath.isEmpty { source += " [\(located.rootPath)]" }
                if let p = located.wrapperPrefix, stateDict.first?.key != located.entries.first?.key { source += " without '\(p)'" }
                print("wrote \(output) (\(format.rawValue)): y \(CLI.shape(y.shape)), \(entry.name) \(what) (\(classes) classes, \(source)) in \(String(format: "%.3f", seconds)) s")
            }
        }
    }

    /// The model with zero weights, ready to load: `numClasses` outputs when given, else the zoo's
    /// default when its shapes fit the state dict, else the width the state dict's classifier has
    /// (class-dependent keys are those whose shape changes with the class count). Also the state
    /// dict keyed for the model: without the wrapper prefix unless the model's own keys carry it
    /// (smallcnn's `model.`).
    /// - Throws: `ZooError` only for an unknown model or a bad class count.
    static func build(_ entry: Zoo.Entry, numClasses: Int?, fitting located: LocatedStateDict) throws
        -> (model: Module, classes: Int, stateDict: [(key: String, tensor: Tensor)]) {
        let n = numClasses ?? entry.defaultClassCount
        let model = try Zoo.make(entry.name, numClasses: n, initialize: false)
        let specs = model.parameterSpecs()
        let keys = Set(specs.map(\.key))
        let raw = located.entries.map { (key: $0.key, tensor: $0.tensor) }
        let unwrapped = zip(located.unwrappedKeys, located.entries).map { (key: $0, tensor: $1.tensor) }
        let stateDict = raw.filter { keys.contains($0.key) }.count > unwrapped.filter { keys.contains($0.key) }.count ? raw : unwrapped
        guard numClasses == nil else { return (model, n, stateDict) }
        let given = Dictionary(stateDict.map { ($0.key, $0.tensor.shape) }, uniquingKeysWith: { a, _ in a })
        if specs.allSatisfy({ spec in given[spec.key].map { $0 == spec.shape } ?? true }) { return (model, n, stateDict) }
        // zero-weight build of another width, for shapes only
        let other = try Zoo.make(entry.name, numClasses: n + 1, initialize: false).parameterSpecs()
        for (a, b) in zip(specs, other) where a.shape != b.shape && a.key == b.key && a.shape.count == b.shape.count {
            guard let dim = zip(a.shape, b.shape).enumerated().first(where: { $1.0 != $1.1 })?.offset,
                  let got = given[a.key], got.count == a.shape.count, got[dim] >= 1, got[dim] != n else { continue }
            // the other dimensions must agree, or this is not a classifier of another width
            if got.enumerated().allSatisfy({ i, s in i == dim || s == a.shape[i] }) {
                return (try Zoo.make(entry.name, numClasses: got[dim], initialize: false), got[dim], stateDict)
            }
        }
        return (model, n, stateDict)
    }

    /// Zero `num_batches_tracked` counters for batch norms whose checkpoint lacks them, as
    /// BatchNorm's `_load_from_state_dict` adds them for state dicts saved before torch 0.4.1.
    static func defaultCounters(_ model: Module, missingFrom stateDict: [(key: String, tensor: Tensor)]) throws -> [(key: String, tensor: Tensor)] {
        let present = Set(stateDict.map(\.key))
        let prefixes = Set(stateDict.map { $0.key.split(separator: ".").dropLast().joined(separator: ".") })
        return try model.parameterSpecs().filter { spec in
            guard spec.key.hasSuffix("num_batches_tracked"), !present.contains(spec.key) else { return false }
            // only for a batch norm whose other entries are there
            return prefixes.contains(spec.key.split(separator: ".").dropLast().joined(separator: "."))
        }.map { ($0.key, try Tensor(dtype: .int64, shape: $0.shape, bytes: [UInt8](repeating: 0, count: 8 * $0.elementCount))) }
    }

    /// One line per kind of problem: shape mismatches with both shapes, missing, unexpected, unreadable keys.
    static func problems(_ report: LoadReport) -> [String] {
        func list(_ items: [String]) -> String {
            items.prefix(6).joined(separator: ", ") + (items.count > 6 ? ", … (\(items.count) in all)" : "")
        }
        var lines: [String] = []
        if !report.mismatched.isEmpty {
            lines.append("\(CLI.grouped(report.mismatched.count)) shape mismatch\(report.mismatched.count == 1 ? "" : "es"): "
                + list(report.mismatched.map { "\($0.key) model \(CLI.shape($0.expected)) checkpoint \(CLI.shape($0.got))" }))
        }
        if !report.missing.isEmpty { lines.append("\(CLI.plural(report.missing.count, "missing key")): " + list(report.missing.map(\.key))) }
        if !report.unexpected.isEmpty {
            lines.append("\(CLI.plural(report.unexpected.count, "unexpected key")): " + list(report.unexpected.map { "\($0.key) \(CLI.shape($0.shape))" }))
        }
        if !report.unreadable.isEmpty {
            lines.append("\(CLI.plural(report.unreadable.count, "unreadable tensor")): " + list(report.unreadable.map { "\($0.key) (\($0.dtype.rawValue))" }))
        }
        return lines
    }
}
