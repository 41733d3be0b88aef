#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CkptNN

/// The tensors that must not move while a stage trains, held as they were when it started:
/// every parameter that does not train, and the buffers of every module none of whose own
/// parameters train (a frozen batch norm's running statistics and counter, unless it normalises
/// with batch statistics: `BatchNorm2d.batchStatisticsWhenFrozen`).
///
/// The snapshot keeps the value arrays themselves: copy-on-write makes that free for tensors that
/// indeed never change, and a tensor written in place gets a copy of its own, leaving the
/// snapshot as it was. `check` compares bit patterns, so NaN and -0 count as the values they are.
struct FrozenTensors {
    /// Each frozen tensor once (a shared parameter under its first key) with its starting values.
    private(set) var entries: [(key: String, parameter: Parameter, values: [Float])] = []

    /// Snapshots the tensors of `model` that do not train now.
    init(model: Module) {
        var seen = Set<ObjectIdentifier>()
        for (path, module) in model.namedModules() {
            let own = module.ownParameters
            let trainsOwn = own.contains { $0.parameter.role == .parameter && $0.parameter.requiresGrad }
                || (module as? BatchNorm2d)?.batchStatisticsWhenFrozen == true
            for (name, p) in own {
                let frozen = p.role == .parameter ? !p.requiresGrad : !trainsOwn
                guard frozen, seen.insert(ObjectIdentifier(p)).inserted else { continue }
                entries.append((path.isEmpty ? name : path + "." + name, p, p.value.values))
            }
        }
    }

    /// The keys of the frozen tensors.
    var keys: [String] { entries.map(\.key) }

    /// Elements held frozen.
    var elementCount: Int { entries.reduce(0) { $0 + $1.values.count } }

    /// Checks that every frozen tensor is bit for bit as it started.
    /// - Throws: `TrainingError.frozenTensorChanged` naming the first that is not, and `epoch`.
    func check(epoch: Int) throws {
        for e in entries where !FrozenTensors.sameBits(e.values, e.parameter.value.values) {
            throw TrainingError.frozenTensorChanged(key: e.key, epoch: epoch)
        }
    }

    /// True when `a` and `b` hold the same float32 bit patterns.
    static func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in
                guard let px = x.baseAddress, let py = y.baseAddress else { return x.count == y.count }
                return px == py || memcmp(px, py, x.count) == 0
            }
        }
    }
}
