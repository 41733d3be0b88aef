internal import CkptAVX512

// Weights are [C_out, C_in/groups, kH, kW]; a training step packs each one it multiplies afresh.

extension Microkernel {
    /// `pack` for a weight that changes every step (training): the same packed floats, made by
    /// in-register transposes (`PackedMatrix.init(transposing:…)`) rather than element by element
    /// (2.7 % of a resnet18 step), the groups' matrices dealt to the cores.
    static func packTransposing(_ values: UnsafePointer<Float>, groups: Int, rows: Int, columns: Int) -> PackedWeights? {
        guard isEnabled, groups >= 1 else { return nil }
        var matrices = [PackedMatrix?](repeating: nil, count: groups)
        matrices.withUnsafeMutableBufferPointer { mb in
            guard let m = mb.baseAddress else { return }
            let box = UncheckedSendable((values, m))
            // a group's matrix per job; small weights stay on the calling thread
            parallelFor(groups, minimumWork: groups * rows * columns >= 1 << 16 ? 2 : Int.max) { g in
                let (v, m) = box.value
                m[g] = PackedMatrix(transposing: v + g * rows * columns, rows: rows, columns: columns, rowStride: columns)
            }
        }
        return PackedWeights(matrices: matrices.compactMap { $0 }, rows: rows, columns: columns)
    }

    /// `packTransposing` of an array of `groups · rows · columns` floats.
    static func packTransposing(_ values: [Float], groups: Int = 1, rows: Int, columns: Int) -> PackedWeights? {
        guard values.count >= groups * rows * columns else { return nil }
        return values.withUnsafeBufferPointer { vb in
            vb.baseAddress.flatMap { packTransposing($0, groups: groups, rows: rows, columns: columns) }
        }
    }
}

extension PackedWeights {
    /// Each group's packed floats in storage order (tests compare packers through them).
    package var packedFloats: [[Float]] { matrices.map(\.packedFloats) }
}

extension Convolution {
    /// `pack(weight:geometry:)` for a weight that trains (packed afresh every step), on the
    /// transposing packer: bit for bit the same packed weight.
    public static func packForTraining(weight: DenseTensor, geometry g: Conv2dGeometry) -> PackedWeights? {
        let coutG = g.outputChannels / max(g.groups, 1)
        let kdim = g.inputChannels / max(g.groups, 1) * g.kernelSize.height * g.kernelSize.width
        return Microkernel.packTransposing(weight.values, groups: g.groups, rows: coutG, columns: kdim)
    }
}
