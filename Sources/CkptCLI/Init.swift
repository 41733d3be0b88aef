import ArgumentParser
import CkptFormat
import CkptTensor
import CkptZoo
import Foundation

/// `ckpt init MODEL -o OUT`: a freshly initialised zoo model's state dict, as
/// `torch.save(torchvision.models.MODEL(num_classes=N).state_dict(), OUT)` writes one.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a freshly initialised zoo model's state dict (torchvision's initialisation rules, ckpt's seeded generator).",
        discussion: """
            Keys, shapes, dtypes and shared storages are torchvision's (segnet's repeated layers are one storage, as the \
            seed's list repetition makes them). Values follow torchvision's rules (kaiming-normal convolutions, VGG's \
            normal(0, 0.01) linears, PyTorch's defaults elsewhere) from ckpt's own generator, seeded per module: \
            the same --seed gives the same file, but not torch's numbers. For templates, examples, and benchmarks.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Seed of the generator.")
    var seed: UInt64 = 0

    @Option(name: .shortAndLong, help: "Output file: .safetensors, or anything else for a zip .pth.")
    var output: String

    @Flag(name: .long, help: "Overwrite an existing output file.")
    var force = false

    @Flag(name: .long, help: "Print what was written as JSON.")
    var json = false

    func run() throws {
        CLI.returnLargeAllocations()
        try CLI.run {
            let entry = try options.entry()
            if !force, FileManager.default.fileExists(atPath: output) {
                throw ValidationError("\(output) exists; pass --force to overwrite it")
            }
            let specs = try Zoo.specification(entry.name, numClasses: options.numClasses).parameterSpecs
            let values = try Zoo.initialValues(entry.name, numClasses: options.numClasses, seed: seed, keys: specs.map(\.key))
            let items: [(key: Value, value: Value)] = try specs.map { spec in
                guard let t = values[spec.key] else { throw ValidationError("no value for \(spec.key)") }
                return (.string(spec.key), .tensor(t))
            }
            let progress = Progress("writing \(output)", total: 1)
            try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: items, kind: .orderedDict)), info: FormatInfo(format: .zip)), to: output) {
                progress.update($0 * 100 / max($1, 1))
            }
            progress.finish()
            let bytes = specs.reduce(0) { $0 + $1.byteCount }
            let format = CheckpointWriter.format(forPath: output).rawValue
            let classes = options.numClasses ?? entry.defaultClassCount
            if json {
                CLI.printJSON(.object([
                    ("output", .string(output)), ("format", .string(format)), ("model", .string(entry.name)),
                    ("num_classes", .int(classes)), ("tensors", .int(specs.count)), ("bytes", .int(bytes)),
                    ("seed", .number(JSONNumber(seed))),
                ]))
            } else {
                print("wrote \(output) (\(format)): \(entry.name), \(classes) classes, \(CLI.plural(specs.count, "tensor")), \(CLI.bytes(bytes)), seed \(seed)")
            }
        }
    }
}
