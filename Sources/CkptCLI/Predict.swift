import ArgumentParser
import CkptData
import CkptFormat
import CkptSurgery
import CkptTrain
import Foundation

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
            order finetune indexed them); without either the class index is shown (label null in JSON). segnet: \
            --inputs pair takes x1 from --image and x2 from --image2 (matched in order), --inputs split takes x1 \
            and x2 from the red and green planes of one image; --output-mask writes each per-pixel argmax as an \
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

    @Option(name: .long, help: "segnet: pair (x1 from --image, x2 from --image2) or split (x1, x2 the red and green planes of one image).")
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

/// One `ckpt predict` run: reads the inputs, drives the library's `Predictor`, prints.
struct PredictJob {
    let c: Predict
    let form: InputForm?

    init(_ c: Predict) {
        self.c = c
        form = c.inputs.flatMap(InputForm.init(rawValue:))
    }

    /// A warning on stderr.
    func warning(_ text: String) {
        FileHandle.standardError.write(Data(("ckpt: warning: " + text + "\n").utf8))
    }

    /// An option error: one line, exit 64.
    func usage(_ message: String) -> ExitCode {
        CLI.printError(message)
        return ExitCode(64)
    }

    func run() throws {
        // the cheap checks first: a mistyped image path stops before the weights are read
        let first = try PredictInputs.collect(c.image)
        let second = try PredictInputs.collect(c.image2)
        for issue in (first.issues + second.issues).prefix(10) { warning(issue.description) }
        let issueCount = first.issues.count + second.issues.count
        if issueCount > 10 { warning("… \(issueCount - 10) more entries left out") }
        var classNames: [String]?
        var labelSource: String?
        if let file = c.labels {
            classNames = try ClassLabels.read(contentsOf: file)
            labelSource = file
        } else if let dir = c.classesFrom {
            classNames = try ImageDataset.load(dir).classes
            labelSource = dir + " (class folders)"
        }

        let checkpoint = try CLI.load(c.weights, c.read)
        let located: LocatedStateDict
        if let key = c.key {
            guard let l = KeyAnalysis.locateStateDict(checkpoint, at: key) else {
                throw SurgeryError(.emptySource, "\(c.weights): no tensors under '\(key)'")
            }
            located = l
        } else {
            located = KeyAnalysis.locateStateDict(checkpoint)
        }
        guard !located.raw.isEmpty else { throw SurgeryError(.emptySource, "\(c.weights): no tensors") }
        let entry = try c.options.entry()
        let fitted: FittedModel
        let predictor: Predictor
        do {
            fitted = try FittedModel.exact(model: entry.name, numClasses: c.options.numClasses, weights: located)
            let segmenting = fitted.model.inputNames.count == 2
            var o = PredictionOptions(batchSize: c.batch ?? (segmenting ? 4 : 32), imageSize: c.imageSize, inputForm: form,
                                      badImages: c.skipBadImages ? .skip : .fail)
            if !segmenting, form == nil { o.inputForm = .one }
            predictor = try Predictor(fitted, options: o)
            if let classNames, let labelSource { try predictor.check(labels: classNames, source: labelSource) }
        } catch let e as TrainingError {
            if case .invalidOption = e { throw usage(e.description) }
            CLI.printError(e.description)
            throw ExitCode(2)
        }
        let samples = try PredictInputs.samples(first: first, second: second, form: predictor.inputForm, model: fitted.name)
        let out = PredictOutput(c: c, fitted: fitted, predictor: predictor, labels: classNames, labelSource: labelSource)
        if predictor.isSegmentation {
            try segment(predictor, samples: samples, first: first, out: out)
        } else {
            if c.outputMask != nil { throw usage("--output-mask: \(fitted.name) is a classifier; masks come from segnet") }
            try classify(predictor, samples: samples, out: out)
        }
    }

    /// Classifies every sample, then prints them all (nothing is printed when an image stops the run).
    func classify(_ predictor: Predictor, samples: [[String]], out: PredictOutput) throws {
        let k = min(c.top ?? 5, predictor.fitted.numClasses)
        var results: [(files: [String], top: [ClassProbability])] = []
        var skipped: [SkippedImage] = []
        let progress = Progress("predicting", total: samples.count)
        try run(progress) {
            try predictor.classify(samples) { batch in
                for p in batch.predictions { results.append((p.files, p.top(k))) }
                skipped += batch.skipped
                progress.update(batch.done)
            }
        }
        progress.finish()
        for s in skipped { warning("skipped \(s.description)") }
        out.classes(results, skipped: skipped)
    }

    /// Segments every sample, writing each mask as its batch is done.
    func segment(_ predictor: Predictor, samples: [[String]], first: PredictInputs.Collected, out: PredictOutput) throws {
        let names = try PredictInputs.maskPaths(c.outputMask, samples: samples, first: first, force: c.force,
                                                inputs: [c.weights] + samples.flatMap { $0 })
        var results: [(prediction: MaskPrediction, path: String?)] = []
        var skipped: [SkippedImage] = []
        let progress = Progress("predicting", total: samples.count)
        try run(progress) {
            try predictor.segment(samples) { batch in
                for p in batch.predictions {
                    let path = names?[p.sample]
                    if let path { try PredictInputs.write(p.mask, to: path, forbidding: [c.weights] + p.files) }
                    results.append((p, path))
                }
                skipped += batch.skipped
                progress.update(batch.done)
            }
        }
        progress.finish()
        for s in skipped { warning("skipped \(s.description)") }
        out.masks(results, skipped: skipped)
    }

    /// Runs `body`, turning an unreadable image into its line plus the hint, exit 2.
    func run(_ progress: Progress, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as DataError {
            progress.finish()
            CLI.printError(e.description + (c.skipBadImages ? "" : " (--skip-bad-images leaves unreadable images out)"))
            throw ExitCode(2)
        } catch let e as TrainingError {
            progress.finish()
            CLI.printError(e.description)
            throw ExitCode(2)
        }
    }
}
