import ArgumentParser

/// The `ckpt` command: PyTorch checkpoint surgery without Python.
public struct Ckpt: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ckpt",
        abstract: "Inspect, convert, diff and scan PyTorch checkpoints without running Python.",
        subcommands: []
    )
    public init() {}
}
