import ArgumentParser
import CkptTrain

/// `ckpt predict MODEL --weights W --image PATH...`: classes (or a segmentation mask) for image
/// files, through the eval transform `finetune` validates with.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images (or segment them, for segnet) with a zoo model and its weights.",
        discussion: """
            Each image goes through the transform finetune validates with: Resize(round(S*256/224)), \
            CenterCrop(S), ToTensor, Normalize with ImageNet's mean and std (RGB for 3-channel models, grey with \
            their means, 0.449 and 0.226, for segnet's 1-channel inputs); S is the zoo's input size or --image-size. \
            Then model.eval(), the forward in batches of --batch, and torch.softmax over the classes: one line per \
            image with the --top most probable classes, or with --json {"images": [{"image": PATH, "predictions": \
            [{"index": I, "label": L, "probability": P}]}], ...}. A folder given to --image stands for every .jpg, \
            .jpeg and .png below it (class folders included), sorted by path; hidden and other files are left out \
            with a warning. --weights is fitted strictly (as forward fits it; the class count is read from the \
            head, or --num-classes); weights of another model stop the command. Labels: --labels FILE (one per \
            line, blank lines ignored) or --classes-from DIR (the class folders of a finetune data folder, in the \
            order finetune indexed them); without either, W.classes.txt beside the weights (what finetune writes) names \
            them when it exists, else the class index is shown (label null in JSON). segnet: \
            --inputs pair takes x1 from --image and x2 from --image2 (matched in order), --inputs split takes x1 \
            and x2 from the red and green planes of one image, --inputs grey feeds one grey image to both (what \
            finetune trains segnet on by default); --output-mask writes each per-pixel argmax as an \
            8-bit grey PNG of the S x S centre crop the model saw (a file for one sample, else a folder: one PNG \
            per sample named after its first image's path below its folder). An image that cannot be read stops the command (exit 2) naming it, unless --skip-bad-images; \
            exit 64 for bad options.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Checkpoint holding the model's state dict (what finetune or transplant wrote).")
    var weights: String

    @Option(name: .long, parsing: .upToNextOption, help: "Image files or folders (repeatable; a folder is searched recursively).")
    var image: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "segnet, --inputs pair: the second image of each sample (x2), matched with --image in order.")
    var image2: [String] = []

    @Option(name: .long, help: "segnet: pair (x1 from --image, x2 from --image2), split (x1, x2 the red and green planes of one image) or grey (one grey image to both, as finetune feeds it by default).")
    var inputs: String?

    @Option(name: .long, help: "Classes shown per image (default 5, at most the class count).")
    var top: Int?

    @Option(name: .long, help: "Class names, one per line, in class-index order.")
    var labels: String?

    @Option(name: .long, help: "Class names from the class folders of a data folder, as finetune indexed them (DIR/train/<class> or DIR/<class>).")
    var classesFrom: String?

    @Option(name: .long, help: "Side of the images fed to the model (default: the zoo's input size).")
    var imageSize: Int?

    @Option(name: .long, help: "Images per forward pass (default 32, 4 for segnet).")
    var batch: Int?

    @Option(name: .long, help: "Dotted path of the state dict inside the checkpoint (model, state_dict, state_dict_ema).")
    var key: String?

    @Option(name: .long, help: "segnet: where the class maps go: a .png file for one sample, else a folder.")
    var outputMask: String?

    @Flag(name: .long, help: "Leave unreadable images out (each named on stderr) instead of stopping.")
    var skipBadImages = false

    @Flag(name: .long, help: "Overwrite existing mask files.")
    var force = false

    @Flag(name: .long, help: "Print a JSON report.")
    var json = false

    @OptionGroup var read: ReadOptions

    /// Checks the options; run() prints a failure as one line, exit 64 (as finetune does).
    func checkOptions() throws {
        if image.isEmpty { throw ValidationError("--image: give at least one image file or folder") }
        if let top, top < 1 { throw ValidationError("--top must be at least 1, got \(top)") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1, got \(batch)") }
        if let s = imageSize, s < 1 || s > 4096 { throw ValidationError("--image-size must be 1…4096, got \(s)") }
        if labels != nil, classesFrom != nil { throw ValidationError("--labels and --classes-from both name the classes; give one") }
        if let inputs, InputForm(rawValue: inputs) == nil {
            throw ValidationError("--inputs must be one of \(InputForm.allCases.map(\.rawValue).joined(separator: ", ")), got '\(inputs)'")
        }
    }

    func run() throws {
        // batch after batch allocates and frees the same activations: reuse the freed pages
        CLI.reuseFreedMemory()
        try CLI.run {
            do {
                try checkOptions()
                try PredictJob(self).run()
            } catch let e as ValidationError {
                // found once the inputs are read (two lists that do not pair): a usage error
                CLI.printError(e.message)
                throw ExitCode(64)
            }
        }
    }
}
