import ArgumentParser
import CkptFormat
import CkptSurgery
import CkptTensor
import CkptTrain
import CkptZoo
import Foundation

/// `ckpt transplant SOURCE --into TARGET [rules] [-o OUT]`: fit a checkpoint's weights to another
/// model by a reported plan, prove the transplanted blocks compute what they computed, and write
/// a state dict PyTorch loads strictly.
struct Transplant: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Graft weights from a checkpoint into a zoo model or a template, with a plan and a proof.",
        discussion: """
            The source's state dict is found as inspect finds it (or under --key) and a prefix every key shares \
            (module., _orig_mod.) is removed. TARGET is a zoo model (ckpt zoo) or a state-dict file used as a template \
            (keys and shapes). Rules apply in order: --drop, --map (user maps, then the target's recipe for blocks no \
            user map names: segnet takes vgg19_bn.features[3:7] -> enc1 ... [40:] -> enc5), --rename; every other key is \
            matched by identical name and shape. A module is taken whole or re-initialised whole. --num-classes \
            re-initialises the head as torchvision does (seeded by --seed); --keep-classes keeps the rows of classes \
            in both label lists; --in-channels adapts the first conv (timm's adapt_input_conv rule by default). \
            When both architectures are in the zoo, each transplanted block and its source run on the same inputs \
            and a difference above 1e-5 fails the command (--no-verify). The output (default \
            TARGET_from_SOURCESTEM.pth; .safetensors by extension) is written with OUT.plan.json beside it. \
            Exit 0 written, 1 a gate failed (--strict, --require-coverage, the proof), 2 bad input.
            """)

    @Argument(help: "Checkpoint holding the weights (.pth, .safetensors, legacy, tar).")
    var source: String

    @Option(name: .long, help: "Target: a zoo model name, or a state-dict file used as a template.")
    var into: String

    @Option(name: .long, help: "Classes of the target's head; the head is re-initialised when the source's differs.")
    var numClasses: Int?

    @Option(name: .customLong("map"), help: "A:B=BLOCK (slice of the first numbered container), CONTAINER.A:B=BLOCK, or MODULE=BLOCK. Repeatable.")
    var maps: [String] = []

    @Option(name: .customLong("rename"), help: "REGEX=REPLACEMENT applied to source keys after the maps ($1 or \\1 for groups). Repeatable.")
    var renames: [String] = []

    @Option(name: .customLong("drop"), help: "REGEX: source keys it matches are never used. Repeatable.")
    var drops: [String] = []

    @Flag(name: .long, help: "Do not apply the target's recipe (segnet's vgg19_bn encoder slices).")
    var noRecipe = false

    @Option(name: .long, parsing: .upToNextOption, help: "OLD.txt NEW.txt: one label per line; keep the head rows of classes in both.")
    var keepClasses: [String] = []

    @Option(name: .long, help: "Input channels of the target's first convolution (adapted from the source's).")
    var inChannels: Int?

    @Option(name: .long, help: "How the first conv is adapted: auto (timm: sum to 1, else repeat scaled), sum, mean, repeat, zero, random.")
    var inChannelsMode: String = "auto"

    @Option(name: .long, help: "Floating dtype written: keep, float32, float16, bfloat16. Lossy casts are reported.")
    var dtype: String = "keep"

    @Flag(name: .long, help: "Propose --map rules by aligning the source's modules with the target's blocks, and use them.")
    var auto = false

    @Option(name: .customLong("from"), help: "The source's zoo architecture, when its keys do not say (for the proof).")
    var fromModel: String?

    @Option(name: .long, help: "Dotted path of the state dict inside the source (model, state_dict, state_dict_ema).")
    var key: String?

    @Option(name: .long, help: "Seed for re-initialised tensors and the proof's inputs.")
    var seed: UInt64 = 0

    @Flag(name: .long, help: "Print the plan; write nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Fail (exit 1) when anything but the asked-for re-initialisations is left uncovered.")
    var strict = false

    @Option(name: .long, help: "PREFIX=PCT%: fail (exit 1) unless the target keys starting with PREFIX are covered to PCT% of their bytes. Repeatable.")
    var requireCoverage: [String] = []

    @Flag(name: .long, help: "Skip the activation proof.")
    var noVerify = false

    @Flag(name: .long, help: "Print the plan as JSON.")
    var json = false

    @Option(name: .shortAndLong, help: "Output file (default TARGET_from_SOURCESTEM.pth in the current folder).")
    var output: String?

    @Flag(name: .long, help: "Overwrite an existing output file.")
    var force = false

    @OptionGroup var read: ReadOptions

    func validate() throws {
        if let n = numClasses, n < 1 { throw ValidationError("--num-classes must be positive, got \(n)") }
        if let c = inChannels, c < 1 { throw ValidationError("--in-channels must be positive, got \(c)") }
        if InputChannelMode(rawValue: inChannelsMode) == nil {
            throw ValidationError("--in-channels-mode must be one of \(InputChannelMode.allCases.map(\.rawValue).joined(separator: ", ")), got '\(inChannelsMode)'")
        }
        if OutputDType(rawValue: dtype) == nil {
            throw ValidationError("--dtype must be keep, float32, float16 or bfloat16, got '\(dtype)'")
        }
        if !keepClasses.isEmpty && keepClasses.count != 2 {
            throw ValidationError("--keep-classes takes two files, OLD.txt NEW.txt; got \(keepClasses.count)")
        }
    }

    func run() throws {
        CLI.returnLargeAllocations()
        try CLI.run {
            try CLI.prepareKernels()
            let job = try TransplantJob.prepare(self)
            try job.run(self)
        }
    }

    /// The output path: `-o`, or `TARGET_from_SOURCESTEM.pth` in the current folder.
    var outputPath: String {
        if let output { return output }
        let stem = URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        let target = Zoo.names.contains(into) ? into : URL(fileURLWithPath: into).deletingPathExtension().lastPathComponent
        return "\(target)_from_\(stem).pth"
    }
}
