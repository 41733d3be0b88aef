import ArgumentParser
import CkptData
import CkptFormat
import CkptSurgery
import CkptTensor
import CkptTrain
import CkptZoo
import Foundation

/// One `ckpt finetune` run: the command's glue over `FineTuning` (the library trains; this file
/// reads the inputs, prints, and writes OUT, OUT.train.pth and OUT.metrics.csv atomically).
struct FinetuneJob {
    let c: Finetune
    let options: FineTuneOptions

    /// Checks the options and the output path; nothing is read yet.
    /// - Throws: `TrainingError.invalidOption` (the command exits 64 with its one line).
    init(_ c: Finetune) throws {
        self.c = c
        options = try c.fineTuneOptions()
        if !c.force, c.resume == nil, FileManager.default.fileExists(atPath: c.output) {
            throw TrainingError.invalidOption(option: "--output", message: "\(c.output) exists; pass --force to overwrite it (or --resume to continue its run)")
        }
        // found now rather than when the first epoch is saved
        let out = URL(fileURLWithPath: c.output)
        var isDirectory: ObjCBool = false
        let folder = out.deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrainingError.invalidOption(option: "--output", message: "the folder \(folder) does not exist")
        }
        for input in [c.weights] + (c.resume.map { [$0] } ?? []) + [c.data]
        where URL(fileURLWithPath: input).resolvingSymlinksInPath().path == out.resolvingSymlinksInPath().path {
            throw TrainingError.invalidOption(option: "--output", message: "\(c.output) is an input of the run; write elsewhere")
        }
    }

    /// The exit code of a training error: 64 for options, 1 for a check or a stop, 2 otherwise.
    static func exitCode(_ e: TrainingError) -> Int32 {
        switch e {
        case .invalidOption, .unknownName, .nothingTrains: return 64
        case .sourceMismatch, .stopped, .frozenTensorChanged: return 1
        default: return 2
        }
    }

    /// Reads, proves, trains and writes.
    func run() throws {
        let start = Date()
        let located = KeyAnalysis.locateStateDict(try CLI.load(c.weights, c.read))
        guard !located.raw.isEmpty else { throw SurgeryError(.emptySource, "\(c.weights): no tensors") }
        var proof: [BlockCheck] = []
        let planFile = c.weights + ".plan.json"
        if options.verify, FileManager.default.fileExists(atPath: planFile) {
            proof = try TransplantReplay.verify(planFile: planFile, weights: located, model: c.model, numClasses: c.numClasses, read: c.read)
            if let f = proof.first(where: { !$0.passes(tolerance: TransplantProof.tolerance) }) {
                CLI.printError("\(c.weights): the transplant's proof fails: block \(f.block) differs from \(f.source) by \(f.maxAbsDiff.map { String(format: "%.3g", $0) } ?? "?") (> \(TransplantProof.tolerance)); refusing to train (--no-verify skips the proof)")
                throw ExitCode(1)
            }
        }
        // the proof's peak is behind us: from here a step frees and allocates the same blocks
        // every step, and keeping them in the process spares their page faults
        CLI.reuseFreedMemory()
        let run: FineTuning
        var resumedFrom: Int?
        var log = TrainingLog(task: Zoo.entries.first { $0.name == c.model }?.family == "segnet" ? .segmentation : .classification)
        do {
            run = try FineTuning(model: c.model, numClasses: c.numClasses, weights: located, data: c.data, options: options)
            if let path = c.resume {
                let checkpoint = try TrainingCheckpoint(try CLI.load(path, c.read).root)
                try run.resume(from: checkpoint)
                resumedFrom = checkpoint.epoch
                // the epochs the checkpoint holds keep their rows (a later, lost epoch's are dropped)
                if let text = try? String(contentsOfFile: c.metricsPath, encoding: .utf8),
                   let earlier = try? MetricsCSV.parse(text, file: c.metricsPath) {
                    log = try TrainingLog(task: log.task, epochs: earlier.epochs.filter { $0.epoch <= checkpoint.epoch })
                }
            }
        } catch let e as TrainingError {
            CLI.printError(e.description)
            throw ExitCode(FinetuneJob.exitCode(e))
        }
        let reports: TrainingReports
        do {
            reports = try TrainingReports(stem: c.output, log: log, title: "\(c.model) on \(URL(fileURLWithPath: c.data).lastPathComponent)",
                                          tensorBoardDirectory: c.tensorboard)
        } catch let e as ReportError {
            CLI.printError(e.description)
            throw ExitCode(2)
        }
        defer { try? reports.close() }
        let out = FinetuneOutput(c: c, json: c.json)
        out.summary(run, located: located, proof: proof, resumedFrom: resumedFrom)

        var written: (best: Int?, last: Int?, classes: String?) = (run.best?.epoch, resumedFrom, nil)
        var warned = Set<String>()
        let inputs = [c.weights] + (c.resume.map { [$0] } ?? [])
        let summary: FineTuneSummary
        do {
            summary = try run.run(onBatch: { out.progress($0) }, onEpoch: { outcome in
                out.clearProgress()
                for s in outcome.skipped where warned.insert(s.path).inserted { out.warning("skipped \(s.description)") }
                if outcome.isBest {
                    let state = try run.modelStateDict()
                    let root = Value.dict(PyDict(items: state.map { (.string($0.key), .tensor($0.tensor)) }, kind: .orderedDict))
                    try CheckpointWriter.write(Checkpoint(root: root, info: FormatInfo(format: .zip)), to: c.output, forbidding: inputs)
                    written.best = outcome.metrics.epoch
                    if written.classes == nil, run.task == .classification, let text = ClassLabels.text(naming: run.classNames) {
                        try AtomicFileWriter.write(Array(text.utf8), to: c.classesPath, forbidding: inputs)
                        written.classes = c.classesPath
                    }
                }
                try CheckpointWriter.write(Checkpoint(root: try run.trainingCheckpoint().value, info: FormatInfo(format: .zip)),
                                           to: c.trainCheckpointPath, forbidding: [c.weights])
                written.last = outcome.metrics.epoch
                try reports.record(outcome.metrics)
                out.epoch(outcome, epochs: options.epochs)
            })
        } catch let e as TrainingError {
            out.clearProgress()
            var line = e.description
            if case .stopped = e {
                line += written.last.map { "; \(c.output) keeps epoch \(written.best ?? $0), \(c.trainCheckpointPath) epoch \($0)" } ?? "; nothing written"
            }
            CLI.printError(line)
            throw ExitCode(FinetuneJob.exitCode(e))
        } catch let e as DataError {
            // an image that cannot be read, met in a batch (PyTorch's DataLoader stops there too)
            out.clearProgress()
            let kept = written.last.map { "; \(c.output) keeps epoch \(written.best ?? $0), \(c.trainCheckpointPath) epoch \($0)" } ?? "; nothing written"
            let hint = options.skipBadImages || e.kind == .invalidArgument ? "" : " (--skip-bad-images leaves unreadable images out)"
            CLI.printError(e.description + kept + hint)
            throw ExitCode(2)
        }
        do {
            try reports.close()
        } catch let e as ReportError {
            out.warning(e.description)
        }
        out.finish(run, summary: summary, seconds: Date().timeIntervalSince(start), resumedFrom: resumedFrom, reports: reports, classesPath: written.classes)
    }
}
