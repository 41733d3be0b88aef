import ArgumentParser
import CkptNN
import CkptZoo
import Foundation

// Shapes follow PyTorch's NCHW layout: N images in a batch, C channels, H rows, W columns.

/// Flags every model command shares: the zoo name and the class count.
struct ModelOptions: ParsableArguments {
    @Argument(help: "Model name from the zoo (`ckpt zoo` lists them).")
    var model: String

    @Option(name: .long, help: "Classes of the final layer (default: the zoo's; forward reads it from the weights).")
    var numClasses: Int?

    func validate() throws {
        if let n = numClasses, n < 1 {
            throw ValidationError("--num-classes must be positive, got \(n)")
        }
    }

    /// The zoo entry named by `model`.
    /// - Throws: `ZooError.unknownModel` listing the zoo.
    func entry() throws -> Zoo.Entry {
        try Zoo.entry(named: model)
    }
}

/// Parsing and printing of the shapes model commands take and show.
enum ModelShapes {
    /// `3x224x224` → `[[3, 224, 224]]`; `1x160x160,1x160x160` → one shape per forward argument.
    /// - Throws: `ValidationError` for anything but positive sizes joined by `x` and `,`.
    static func parse(_ text: String) throws -> [[Int]] {
        let shapes = text.split(separator: ",", omittingEmptySubsequences: false).map { part in
            part.split(separator: "x", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        guard !shapes.isEmpty, shapes.allSatisfy({ s in !s.isEmpty && s.allSatisfy { ($0 ?? 0) >= 1 } }) else {
            throw ValidationError("--input must be sizes joined by 'x', one shape per model input joined by ',' (3x224x224 or 1x160x160,1x160x160), got '\(text)'")
        }
        return shapes.map { $0.compactMap { $0 } }
    }

    /// `1x3x224x224`.
    static func text(_ shape: [Int]) -> String { shape.map(String.init).joined(separator: "x") }

    /// `3x224x224` for every forward argument, joined by `,`.
    static func text(_ shapes: [[Int]]) -> String { shapes.map(text).joined(separator: ",") }
}
