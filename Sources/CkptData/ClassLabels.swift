import Foundation

/// Class names read from a text file of one label per line, as `imagenet_classes.txt` and
/// torchvision's `weights.meta["categories"]` dumps are written.
///
/// Lines end in `\n`, `\r\n` or `\r`; spaces and tabs around a label are trimmed; blank lines
/// (anywhere, a trailing newline included) are not labels; a UTF-8 byte-order mark is skipped.
/// Line `i` of the remaining ones names class `i`.
/// PyTorch counterpart: `[line.strip() for line in open(f) if line.strip()]`.
public enum ClassLabels {
    /// The largest label file read (16 MiB): far beyond any class list.
    public static let maximumFileBytes = 16 << 20

    /// The labels in `text`, one per non-blank line.
    public static func parse(_ text: String) -> [String] {
        var body = Substring(text)
        if body.hasPrefix("\u{FEFF}") { body = body.dropFirst() }
        // `\r\n` is one Character: split on whatever ends a line
        return body.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t\r")) }
            .filter { !$0.isEmpty }
    }

    /// The text of a labels file that names `names` in order (one per line, each ending in `\n`),
    /// or nil when `parse` would not give them back: a blank name, one with a line break, or with
    /// spaces or tabs around it cannot be written in this format.
    public static func text(naming names: [String]) -> String? {
        let text = names.map { $0 + "\n" }.joined()
        return !names.isEmpty && parse(text) == names ? text : nil
    }

    /// The labels of the file at `path`.
    /// - Throws: `DataError.io` when it cannot be read, `.limit` when larger than
    ///   `maximumFileBytes`, `.corrupt` when it is not UTF-8 text, `.layout` when it holds no label.
    public static func read(contentsOf path: String) throws -> [String] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw DataError(.io, file: path, "cannot read the labels: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw DataError(.io, file: path, "the labels file is not a regular file") }
        guard Int(st.st_size) <= maximumFileBytes else {
            throw DataError(.limit, file: path, "labels file of \(st.st_size) bytes is larger than the limit of \(maximumFileBytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(.io, file: path, "cannot read the labels")
        }
        guard let text = String(validating: [UInt8](data), as: UTF8.self) else {
            throw DataError(.corrupt, file: path, "the labels file is not utf-8 text")
        }
        let labels = parse(text)
        guard !labels.isEmpty else { throw DataError(.layout, file: path, "no label: expected one class name per line") }
        return labels
    }
}
