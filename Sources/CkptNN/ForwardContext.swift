import CkptKernels
import Dispatch

/// Per-call state of a forward pass: the dotted path of the module running now, which
/// module's output to capture, and an optional trace of every module for summaries.
///
/// A module called twice under one path (ResNet's shared `relu`) is captured on its first call,
/// as a PyTorch forward hook that keeps its first output would.
public final class ForwardContext {
    /// One module call, recorded when tracing.
    public struct TraceEntry: Sendable {
        /// Dotted path (`layer1.0.conv1`).
        public var path: String
        /// PyTorch class name (`Conv2d`).
        public var typeName: String
        /// Nesting depth (1 for a top-level child).
        public var depth: Int
        /// Input shape of the first input.
        public var inputShape: [Int]
        /// Output shape.
        public var outputShape: [Int]
        /// Elements of the module's own parameters (not its children's).
        public var parameterCount: Int
        /// Elements of own parameters that are trainable.
        public var trainableParameterCount: Int
        /// Multiply-adds of the call as torchinfo counts them ("Mult-Adds").
        public var multAdds: Int
        /// Multiply-adds the call actually performed.
        public var arithmeticMultAdds: Int
        /// True for a module with no children.
        public var isLeaf: Bool
        /// Identity of the module object, equal across the names of a shared module.
        public var moduleIdentity: ObjectIdentifier
    }

    /// Path of the module whose output to keep, or nil.
    public let captureTarget: String?
    /// The captured output, once the target has run.
    public private(set) var captured: DenseTensor?
    /// Path of the module whose input to keep (the features a cached head trains on), or nil.
    public var inputCaptureTarget: String?
    /// The captured input, once the module at `inputCaptureTarget` has been called.
    public internal(set) var capturedInput: DenseTensor?
    /// Every call in the order calls finished, when tracing.
    public private(set) var trace: [TraceEntry]?
    /// Paths of every module that ran (for error messages naming what exists).
    public private(set) var visitedPaths: [String] = []
    private var path: [String] = []

    /// False to run every layer on its own (no folded batch norms, no fused ReLUs).
    public let allowsFusion: Bool

    /// Wall time of one leaf call (or of one fused kernel standing for several leaves), when profiling.
    public struct ProfileEntry: Sendable {
        /// Dotted path of the (first) module the time belongs to.
        public var path: String
        /// PyTorch class name, or the fused chain (`Conv2d+BatchNorm2d+ReLU`).
        public var typeName: String
        /// Output shape.
        public var outputShape: [Int]
        /// Seconds spent.
        public var seconds: Double

        /// An entry for work outside the layers (an optimizer step) that a caller times itself.
        public init(path: String, typeName: String, outputShape: [Int], seconds: Double) {
            self.path = path
            self.typeName = typeName
            self.outputShape = outputShape
            self.seconds = seconds
        }
    }

    /// Every timed call in order, when profiling.
    public private(set) var profile: [ProfileEntry]?

    /// True for a training pass: every module call keeps what its backward needs on the tape.
    public let isRecording: Bool
    /// In a recording pass, whether the activation flowing now depends on something that trains
    /// (a trainable parameter upstream, or an input that asked for its gradient). Modules read it
    /// on entry and set it on exit; branching modules save and combine it.
    public var flowNeedsGradient: Bool
    /// What each module call of a recording pass kept, pushed by forwards and popped by backwards.
    var tape: [TapeEntry] = []
    /// Dropout masks for tests: given the dropout's path, its call number in this pass (from 0)
    /// and the element count, the mask (0 or `1/(1−p)` per element); nil draws from `generator`.
    public var dropoutMask: ((_ path: String, _ call: Int, _ count: Int) -> [Float])?
    /// Draws dropout masks when `dropoutMask` is nil.
    public var generator: SeededGenerator
    var dropoutCalls = 0

    /// A context capturing `captureTarget` (nil for none), tracing when `tracing` is true,
    /// fusing layers when `fusing` is true and nothing needs their separate outputs.
    /// `profiling` times every leaf module (and fused kernel) without changing which kernels run.
    /// `recording` makes a training pass whose `backward` can follow; `inputNeedsGradient` asks
    /// for the gradient with respect to the model's inputs too.
    public init(capturing captureTarget: String? = nil, tracing: Bool = false, fusing: Bool = true, profiling: Bool = false,
                recording: Bool = false, inputNeedsGradient: Bool = false, seed: UInt64 = 0) {
        self.captureTarget = captureTarget
        self.allowsFusion = fusing
        self.trace = tracing ? [] : nil
        self.profile = profiling ? [] : nil
        self.isRecording = recording
        self.flowNeedsGradient = inputNeedsGradient
        self.generator = SeededGenerator(seed: seed)
    }

    /// Entries still on the tape (0 once a backward has consumed the whole pass).
    public var tapeCount: Int { tape.count }

    /// Bytes of activations the tape holds (what a training pass keeps alive for its backward).
    public var tapeBytes: Int { tape.reduce(0) { $0 + $1.saved.byteCount } }

    func push(_ entry: TapeEntry) { tape.append(entry) }

    /// The next dropout call's mask: 0 or `1/(1−p)` per element.
    func nextDropoutMask(count: Int, probability p: Float) -> [Float] {
        defer { dropoutCalls += 1 }
        if let given = dropoutMask { return given(currentPath, dropoutCalls, count) }
        let scale = 1 / (1 - p)
        var mask = [Float](repeating: 0, count: count)
        for i in 0 ..< count where Float.random(in: 0 ..< 1, using: &generator) >= p { mask[i] = scale }
        return mask
    }

    /// Pops the entry `module` pushed; a mismatch means a backward does not mirror its forward.
    func pop(for module: Module) throws -> TapeEntry {
        guard let e = tape.popLast() else {
            throw NNError.backwardOrder(path: currentPath, expected: module.typeName, found: "an empty tape")
        }
        guard e.module == ObjectIdentifier(module) else {
            throw NNError.backwardOrder(path: currentPath, expected: module.typeName, found: "another module's entry")
        }
        return e
    }

    /// Runs `body`, recording its wall time under the current path when profiling (backward calls too).
    func timedBackward(_ typeName: String, _ body: () throws -> DenseTensor?) rethrows -> DenseTensor? {
        guard profile != nil else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let y = try body()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        profile?.append(ProfileEntry(path: currentPath, typeName: typeName + " backward", outputShape: y?.shape ?? [], seconds: seconds))
        return y
    }

    /// Runs `body`, recording its wall time under the current path when profiling.
    func timed(_ typeName: String, _ body: () throws -> DenseTensor) rethrows -> DenseTensor {
        guard profile != nil else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let y = try body()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        profile?.append(ProfileEntry(path: currentPath, typeName: typeName, outputShape: y.shape, seconds: seconds))
        return y
    }

    /// The dotted path of the module running now.
    public var currentPath: String { path.joined(separator: ".") }

    /// Depth of the module running now (0 for the model itself).
    public var depth: Int { path.count }

    /// True when fused kernels may skip the outputs of children `names` of the module running
    /// now: nothing asks to capture or trace them.
    public func mayFuse(_ names: [String]) -> Bool {
        if trace != nil || !allowsFusion { return false }
        guard let target = captureTarget else { return true }
        let base = currentPath
        for n in names {
            let p = base.isEmpty ? n : base + "." + n
            if target == p || target.hasPrefix(p + ".") { return false }
        }
        return true
    }

    func enter(_ name: String) { path.append(name) }
    func leave() { path.removeLast() }

    func record(_ output: DenseTensor, module: Module, input: [Int]) {
        let p = currentPath
        visitedPaths.append(p)
        if captured == nil, let t = captureTarget, t == p { captured = output }
        if trace != nil {
            let own = module.ownParameters
            trace?.append(TraceEntry(
                path: p, typeName: module.typeName, depth: path.count, inputShape: input,
                outputShape: output.shape,
                parameterCount: own.reduce(0) { $0 + ($1.parameter.role == .parameter ? $1.parameter.value.count : 0) },
                trainableParameterCount: own.reduce(0) { $0 + ($1.parameter.requiresGrad ? $1.parameter.value.count : 0) },
                multAdds: module.multAdds(inputShape: input, outputShape: output.shape),
                arithmeticMultAdds: module.arithmeticMultAdds(inputShape: input, outputShape: output.shape),
                isLeaf: module.children.isEmpty, moduleIdentity: ObjectIdentifier(module)))
        }
    }
}
