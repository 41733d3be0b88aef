import CkptData
import CkptNN
import CkptFormat
import CkptSurgery
import CkptTensor
import CkptTrain
import Foundation

/// What `ckpt finetune` prints: a summary before training, a progress line per batch on a
/// terminal (redrawn in place on stderr), a line per epoch, and a closing line or `--json`.
/// With `--json`, everything but the report goes to stderr.
final class FinetuneOutput {
    let c: Finetune
    let json: Bool
    private let terminal = isatty(2) != 0
    private var lastDraw = Date.distantPast
    private var drawn = false
    private var warnings: [String] = []

    init(c: Finetune, json: Bool) {
        self.c = c
        self.json = json
    }

    /// A line for people: stdout, or stderr under `--json`.
    func say(_ line: String) {
        if json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line) }
    }

    /// A warning on stderr (kept for the JSON report).
    func warning(_ text: String) {
        warnings.append(text)
        FileHandle.standardError.write(Data(("ckpt: warning: " + text + "\n").utf8))
    }

    /// Module paths of `keys`, shortened when there are many.
    static func modules(_ keys: [String]) -> String {
        var paths: [String] = []
        for k in keys {
            let m = StateDict.modulePath(of: k)
            if paths.last != m { paths.append(m.isEmpty ? k : m) }
        }
        if paths.count <= 6 { return paths.joined(separator: ", ") }
        return (paths.prefix(3) + ["…"] + paths.suffix(2)).joined(separator: ", ") + " (\(paths.count) modules)"
    }

    /// The summary before the first step.
    func summary(_ run: FineTuning, located: LocatedStateDict, proof: [BlockCheck], resumedFrom: Int?) {
        let plan = run.fitted.plan
        var fit = "\(plan.copied.count) copied"
        if !plan.filled.isEmpty { fit += ", \(plan.filled.count) filled" }
        if !plan.reinitialized.isEmpty { fit += ", \(plan.reinitialized.count) re-initialised (new head)" }
        let checked = run.verifiedTensors > 0 ? "; \(CLI.plural(run.verifiedTensors, "tensor")) equal to their source" : ""
        let root = located.rootPath.isEmpty ? "" : " [\(located.rootPath)]"
        say("weights: \(c.weights)\(root) -> \(run.fitted.name) (\(run.fitted.numClasses) classes): \(fit)\(checked)")
        if !proof.isEmpty {
            let worst = proof.compactMap(\.maxAbsDiff).max() ?? 0
            say("proof: \(c.weights).plan.json re-run: \(CLI.plural(proof.count, "block")), max|Δ| \(worst == 0 ? "0" : String(format: "%.3g", worst))")
        }
        let counts = run.sampleCounts, issues = run.dataIssues
        let kind = run.task == .segmentation ? "image and mask pair" : "image"
        say("data: \(c.data) (\(run.dataLayout)): \(run.classNames.count) classes\(run.task == .segmentation ? " (per pixel)" : ""), \(CLI.plural(counts.train, "training " + kind)), \(CLI.plural(counts.validation, "validation " + kind))")
        for issue in issues.prefix(10) { warning(issue.message) }
        if issues.count > 10 { warning("… \(issues.count - 10) more folder issues") }
        for line in FinetuneOutput.table(run) { say(line) }
        let trainable = run.trainableKeys
        let all = run.fitted.model.namedParameters().filter { $0.parameter.role == .parameter }.count
        let what = trainable.count == all ? "everything" : FinetuneOutput.modules(trainable)
        var stages = ""
        if run.options.mode == .twoStage {
            stages = "; stage 2 from epoch \(run.options.stage1Epochs + 1) at lr \(CLI.number(run.options.learningRate * run.options.unfreezeFactor))"
        }
        say("trains: \(what) (\(CLI.plural(trainable.count, "tensor")), \(CLI.grouped(run.trainableParameterCount)) of \(CLI.grouped(run.fitted.model.parameterCount)) parameters); \(CLI.plural(run.frozenKeys.count, "tensor")) held frozen\(stages)")
        let o = run.options
        var how = "\(o.mode.rawValue), \(o.optimizer.rawValue) lr \(CLI.number(o.learningRate))"
        if !o.groupLearningRates.isEmpty {
            how += " (" + o.groupLearningRates.map { "\($0.name) \(CLI.number($0.learningRate))" }.joined(separator: ", ") + ")"
        }
        if o.optimizer == .sgd { how += " momentum \(CLI.number(o.momentum))" }
        how += " weight decay \(CLI.number(o.effectiveWeightDecay)), schedule \(o.schedule.rawValue)"
        if o.warmupEpochs > 0 { how += " after \(o.warmupEpochs) warm-up epoch(s)" }
        let batches = run.batchesPerEpoch
        how += "; \(CLI.plural(o.epochs, "epoch")) of \(batches) batch\(batches == 1 ? "" : "es") of \(o.batchSize), \(run.imageSize)x\(run.imageSize)"
        how += o.augment ? ", augmented" : ", no augmentation"
        how += o.shuffle ? ", shuffled (seed \(o.seed))" : ", ImageFolder order"
        if o.frozenBatchNormStatistics { how += "; frozen batch norms use batch statistics (--frozen-bn train)" }
        if let b = run.cachedHeadBoundary { how += "; the frozen network runs once per image, the head (from \(b)) trains on its outputs" }
        say("training: \(how)")
        if let e = resumedFrom { say("resumed: \(c.resume ?? "") after epoch \(e)") }
    }

    /// One row per module with parameters: the model's children, a child opened into its own
    /// children where part of it trains and part does not; parameters, whether they train in the
    /// first stage, and where their values come from (the fit's plan).
    static func table(_ run: FineTuning) -> [String] {
        let reinitialized = Set(run.fitted.plan.reinitialized.map(\.spec.key))
        var rows: [(name: String, type: String, count: Int, trains: String, source: String)] = []
        func visit(_ module: Module, path: String) {
            let parameters = module.namedParameters(prefix: path).filter { $0.parameter.role == .parameter }
            guard !parameters.isEmpty else { return }
            let training = parameters.filter(\.parameter.requiresGrad).count
            let new = parameters.filter { reinitialized.contains($0.key) }.count
            if (training > 0 && training < parameters.count) || (new > 0 && new < parameters.count), !module.children.isEmpty {
                for c in module.children { visit(c.module, path: path.isEmpty ? c.name : path + "." + c.name) }
                return
            }
            rows.append((path, module.typeName, parameters.reduce(0) { $0 + $1.parameter.value.count },
                         training == 0 ? "frozen" : (training == parameters.count ? "trains" : "partly"),
                         new == 0 ? "loaded" : (new == parameters.count ? "new" : "partly new")))
        }
        for c in run.fitted.model.children { visit(c.module, path: c.name) }
        let w = max(6, rows.map(\.name.count).max() ?? 0), tw = max(4, rows.map(\.type.count).max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
        func left(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        var lines = ["  " + pad("module", w) + "  " + pad("type", tw) + "  " + left("parameters", 11) + "  trainable  weights"]
        for r in rows {
            lines.append("  " + pad(r.name, w) + "  " + pad(r.type, tw) + "  " + left(CLI.grouped(r.count), 11) + "  " + pad(r.trains, 9) + "  " + r.source)
        }
        return lines
    }

    /// The progress line of a batch, redrawn in place on a terminal at most ten times a second.
    func progress(_ p: BatchProgress) {
        guard terminal, p.batch == p.batches || Date().timeIntervalSince(lastDraw) > 0.1 else { return }
        lastDraw = Date()
        let eta = Int(p.etaSeconds.rounded())
        if p.caching {
            let line = String(format: "epoch %d/%d  caching the frozen network's outputs: batch %d/%d  ETA %d:%02d", p.epoch, p.epochs, p.batch, p.batches, eta / 60, eta % 60)
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            drawn = true
            return
        }
        let line = String(format: "epoch %d/%d  batch %d/%d  loss %.4f  acc %.1f%%  %.1f img/s  ETA %d:%02d",
                          p.epoch, p.epochs, p.batch, p.batches, p.loss, p.accuracy * 100, p.imagesPerSecond, eta / 60, eta % 60)
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        drawn = true
    }

    /// Clears the progress line, if one is drawn.
    func clearProgress() {
        guard drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        drawn = false
    }

    /// The line of a finished epoch.
    func epoch(_ outcome: EpochOutcome, epochs: Int) {
        let m = outcome.metrics
        var line = String(format: "epoch %d/%d", m.epoch, epochs)
        if c.mode == FineTuneMode.twoStage.rawValue { line += " (stage \(m.stage))" }
        func loss(_ x: Double) -> String { x.isFinite ? String(format: "%.4f", x) : (x.isNaN ? "nan" : "\(x)") }
        line += ": train loss \(loss(m.trainLoss))" + String(format: " acc %.1f%%", m.trainAccuracy * 100)
        if let l = m.validationLoss, let a = m.validationAccuracy { line += "  val loss \(loss(l))" + String(format: " acc %.1f%%", a * 100) }
        if let iou = m.validationMeanIoU { line += String(format: " mIoU %.3f", iou) }
        line += "  lr \(CLI.number(m.learningRate))" + String(format: "  %.1f img/s  %.1f s", m.imagesPerSecond, m.seconds)
        if outcome.fromCachedFeatures { line += " (head on cached features)" }
        if outcome.isBest { line += "  best, saved" }
        say(line)
    }

    /// The closing line, or the JSON report.
    func finish(_ run: FineTuning, summary: FineTuneSummary, seconds: Double, resumedFrom: Int?, reports: TrainingReports, classesPath: String?) {
        let best = summary.epochs.first { $0.epoch == summary.bestEpoch }
        if json {
            func number(_ x: Double?) -> JSONValue { x.map { $0.isFinite ? .double($0) : .string("\($0)") } ?? .null }
            let metrics = summary.epochs.map { m -> JSONValue in
                .object([("epoch", .int(m.epoch)), ("stage", .int(m.stage)), ("train_loss", number(m.trainLoss)),
                         ("train_accuracy", number(m.trainAccuracy)), ("val_loss", number(m.validationLoss)),
                         ("val_accuracy", number(m.validationAccuracy)), ("val_miou", number(m.validationMeanIoU)), ("learning_rate", number(m.learningRate)),
                         ("images_per_second", number(m.imagesPerSecond)), ("seconds", number(m.seconds)), ("images", .int(m.images))])
            }
            CLI.printJSON(.object([
                ("model", .string(run.fitted.name)), ("num_classes", .int(run.fitted.numClasses)), ("weights", .string(c.weights)),
                ("data", .string(c.data)), ("task", .string(run.task.rawValue)), ("classes", .array(run.classNames.map { .string($0) })), ("mode", .string(run.options.mode.rawValue)),
                ("epochs", .int(run.options.epochs)), ("resumed_after_epoch", resumedFrom.map { .int($0) } ?? .null),
                ("best_epoch", summary.bestEpoch.map { .int($0) } ?? .null), ("metrics", .array(metrics)),
                ("trainable", .array(run.trainableKeys.map { .string($0) })),
                ("frozen_batch_norms", .string(run.options.frozenBatchNormStatistics ? "train" : "eval")), ("steps", .int(summary.steps)),
                ("seconds", .double(seconds)), ("images_per_second", .double(summary.imagesPerSecond)),
                ("output", .string(c.output)), ("train_checkpoint", .string(c.trainCheckpointPath)), ("metrics_csv", .string(reports.metricsPath)), ("curves_svg", .string(reports.curvesPath)), ("classes_txt", classesPath.map { .string($0) } ?? .null),
                ("tensorboard", reports.tensorBoard.map { .string($0.path) } ?? .null),
                ("warnings", .array(warnings.map { .string($0) })),
            ]))
            return
        }
        var line = "best epoch \(summary.bestEpoch.map(String.init) ?? "-")"
        if let b = best {
            if let iou = b.validationMeanIoU { line += String(format: " (val mIoU %.3f)", iou) } else if let a = b.validationAccuracy { line += String(format: " (val accuracy %.1f%%)", a * 100) } else { line += String(format: " (train loss %.4f)", b.trainLoss) }
        } else if summary.bestEpoch != nil {
            line += " (an earlier run's)"
        }
        line += ": wrote \(c.output), \(c.trainCheckpointPath), \(reports.metricsPath), \(reports.curvesPath)"
        if let classesPath { line += ", \(classesPath)" }
        if let tb = reports.tensorBoard { line += ", \(tb.path)" }
        line += " in " + String(format: "%.1f s (%.1f img/s)", seconds, summary.imagesPerSecond)
        say(line)
    }
}
