import ArgumentParser
import CkptData
import CkptFormat
import CkptSurgery
import CkptTrain
import Foundation

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
        // the cheap checks first: a mistyped model or image path stops before the weights are read
        let entry = try c.options.entry()
        let first = try PredictInputs.collect(c.image)
        let second = try PredictInputs.collect(c.image2)
        for issue in (first.issues + second.issues).prefix(10) { warning(issue.message) }
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
        } else if FileManager.default.fileExists(atPath: c.weights + ".classes.txt") {
            // what finetune wrote beside its output
            classNames = try ClassLabels.read(contentsOf: c.weights + ".classes.txt")
            labelSource = c.weights + ".classes.txt"
        }

        let checkpoint = try CLI.load(c.weights, c.read)
        let located = try CLI.locateStateDict(checkpoint, key: c.key, file: c.weights)
        guard !located.raw.isEmpty else { throw SurgeryError(.emptySource, "\(c.weights): no tensors") }
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
        try checkSomethingWasRead(results.count, of: samples.count)
        out.classes(results, skipped: skipped)
    }

    /// Segments every sample, then writes the masks and prints (nothing is written when an image
    /// stops the run).
    func segment(_ predictor: Predictor, samples: [[String]], first: PredictInputs.Collected, out: PredictOutput) throws {
        let names = try PredictInputs.maskPaths(c.outputMask, samples: samples, first: first, force: c.force,
                                                inputs: [c.weights] + samples.flatMap { $0 })
        var masks: [MaskPrediction] = []
        var skipped: [SkippedImage] = []
        let progress = Progress("predicting", total: samples.count)
        try run(progress) {
            try predictor.segment(samples) { batch in
                masks += batch.predictions
                skipped += batch.skipped
                progress.update(batch.done)
            }
        }
        progress.finish()
        for s in skipped { warning("skipped \(s.description)") }
        try checkSomethingWasRead(masks.count, of: samples.count)
        var results: [(prediction: MaskPrediction, path: String?)] = []
        for m in masks {
            let path = names?[m.sample]
            if let path { try PredictInputs.write(m.mask, to: path, forbidding: [c.weights] + m.files) }
            results.append((m, path))
        }
        out.masks(results, skipped: skipped)
    }

    /// Stops (exit 2) when every image was left out: an empty report would pass for a result.
    func checkSomethingWasRead(_ read: Int, of total: Int) throws {
        guard read == 0, total > 0 else { return }
        CLI.printError("no sample could be read (\(CLI.plural(total, "sample")) left out); nothing to report")
        throw ExitCode(2)
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
