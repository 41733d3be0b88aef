import CkptTensor

/// Where a fine-tuning run stood when its checkpoint was taken, beyond what torch's layout holds:
/// kept under `ckpt_finetune`, which a torch script resuming from the file simply ignores.
public struct FineTuneProgress: Sendable, Equatable {
    /// The mode the run trains in (`finetune`).
    public var mode: String
    /// Classes of the model's head.
    public var numClasses: Int
    /// Optimizer steps taken so far, over every stage.
    public var steps: Int
    /// The stage whose optimizer and schedule the checkpoint holds, from 0.
    public var stage: Int
    /// The best epoch so far (from 1), and its score (`EpochMetrics.score`); nil before the first.
    public var bestEpoch: Int?
    /// The best epoch's score.
    public var bestScore: [Double]?

    /// Progress as stored.
    public init(mode: String, numClasses: Int, steps: Int, stage: Int, bestEpoch: Int?, bestScore: [Double]?) {
        self.mode = mode
        self.numClasses = numClasses
        self.steps = steps
        self.stage = stage
        self.bestEpoch = bestEpoch
        self.bestScore = bestScore
    }
}

/// `OUT.train.pth`: `{'model': OrderedDict, 'optimizer': optimizer.state_dict(), 'scheduler':
/// scheduler.state_dict() or None, 'epoch': epochs completed, 'ckpt_finetune': {...}}`, the
/// layout of the tutorials' `torch.save({...}, path)`. A torch script resumes from it with
/// `model.load_state_dict(c['model'])`, `optimizer.load_state_dict(c['optimizer'])`,
/// `scheduler.load_state_dict(c['scheduler'])` and `range(c['epoch'], epochs)`.
public struct TrainingCheckpoint: Sendable {
    /// The model's state dict at the end of epoch `epoch` (not the best epoch's).
    public var model: StateDict
    /// The optimizer's state dict, of the optimizer the next epoch trains with.
    public var optimizer: Value
    /// The schedule's state dict, `None` without a schedule.
    public var scheduler: Value
    /// Epochs completed: the next epoch to run, counted from 0.
    public var epoch: Int
    /// The run's own bookkeeping.
    public var progress: FineTuneProgress

    /// A checkpoint from its parts.
    public init(model: StateDict, optimizer: Value, scheduler: Value, epoch: Int, progress: FineTuneProgress) {
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.epoch = epoch
        self.progress = progress
    }

    /// The checkpoint as the value a writer saves.
    public var value: Value {
        let model = Value.dict(PyDict(items: self.model.map { (.string($0.key), .tensor($0.tensor)) }, kind: .orderedDict))
        var progressItems: [(key: Value, value: Value)] = [
            (.string("mode"), .string(progress.mode)), (.string("num_classes"), .int(progress.numClasses)),
            (.string("steps"), .int(progress.steps)), (.string("stage"), .int(progress.stage)),
            (.string("best_epoch"), progress.bestEpoch.map { .int($0) } ?? .none),
        ]
        progressItems.append((.string("best_score"), progress.bestScore.map { .list($0.map { .float($0) }) } ?? .none))
        return .dict(PyDict(items: [(.string("model"), model), (.string("optimizer"), optimizer), (.string("scheduler"), scheduler),
                                    (.string("epoch"), .int(epoch)), (.string("ckpt_finetune"), .dict(PyDict(items: progressItems)))]))
    }

    /// Reads a checkpoint `value` (as `ckpt finetune` writes it).
    /// - Throws: `TrainingError.resume` naming what is missing or of the wrong type.
    public init(_ value: Value) throws {
        guard let root = value.dictValue else { throw TrainingError.resume(message: "expected a dict with model, optimizer, scheduler and epoch, got \(value.typeName)") }
        guard let modelDict = root["model"]?.dictValue else { throw TrainingError.resume(message: "no 'model' state dict") }
        var entries: [(key: String, tensor: Tensor)] = []
        for (k, v) in modelDict.items {
            guard let key = k.stringValue, let t = v.tensorValue else {
                throw TrainingError.resume(message: "'model' holds \(k.pathComponent), which is not a tensor under a string key")
            }
            entries.append((key, t))
        }
        guard let optimizer = root["optimizer"] else { throw TrainingError.resume(message: "no 'optimizer' state dict") }
        guard let epoch = root["epoch"]?.intValue, epoch >= 0 else { throw TrainingError.resume(message: "no 'epoch' count") }
        guard let p = root["ckpt_finetune"]?.dictValue, let mode = p["mode"]?.stringValue, let n = p["num_classes"]?.intValue,
              let steps = p["steps"]?.intValue, let stage = p["stage"]?.intValue else {
            throw TrainingError.resume(message: "no 'ckpt_finetune' progress (was it written by ckpt finetune?)")
        }
        var score: [Double]?
        if let items = p["best_score"]?.sequenceValue {
            score = items.compactMap { v -> Double? in
                switch v {
                case let .float(d): return d
                case let .int(i): return Double(i)
                default: return nil
                }
            }
        }
        self.init(model: StateDict(entries), optimizer: optimizer, scheduler: root["scheduler"] ?? .none, epoch: epoch,
                  progress: FineTuneProgress(mode: mode, numClasses: n, steps: steps, stage: stage,
                                             bestEpoch: p["best_epoch"]?.intValue, bestScore: score))
    }
}
