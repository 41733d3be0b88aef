import Foundation

/// A classification dataset: training and validation samples under one class map.
///
/// Two layouts, as the tutorials use them: `DIR/train/<class>/…` with `DIR/val/<class>/…`
/// (`validation/` and `valid/` are accepted too), or one folder of class folders split by a
/// validation fraction. Unlike two separate torchvision `ImageFolder`s, the class map is the
/// sorted union of both splits' class folders, so a class missing from `val/` does not shift the
/// indices of the classes after it; the missing class is reported.
public struct ImageDataset: Sendable {
    /// Class names, sorted; `Sample.classIndex` points here in both splits.
    public var classes: [String]
    /// Training samples in ImageFolder order.
    public var train: [Sample]
    /// Validation samples in ImageFolder order (empty when there is no validation split).
    public var validation: [Sample]
    /// Entries left out or worth a look, from both splits.
    public var issues: [FolderIssue]
    /// `"train/val folders"`, `"one folder split 80/20 (seed 0)"`, `"one folder"` (the folder
    /// itself, or `train/` when there is no validation folder).
    public var layout: String

    /// The validation folder names tried after `train/`, in order.
    public static let validationFolderNames = ["val", "validation", "valid"]

    /// Reads the dataset at `dir`.
    /// - Parameters:
    ///   - validationFraction: for a single folder (or `train/` alone), the share of each
    ///     class's images (rounded) moved to validation, chosen by `seed`; `nil` keeps everything
    ///     for training. Not allowed when `dir` has a validation folder.
    ///   - seed: chooses the validation images of a split folder.
    /// - Throws: `DataError.io` when a folder cannot be listed; `DataError.layout` when there is
    ///   no class folder, a class folder of the training images holds no image ckpt reads
    ///   (torchvision's `FileNotFoundError`), or a fraction is given for a dataset that has a
    ///   validation folder; `DataError.invalidArgument` for a fraction outside [0, 1).
    public static func load(_ dir: String, validationFraction: Double? = nil, seed: UInt64 = 0,
                            options: FolderOptions = FolderOptions()) throws -> ImageDataset {
        if let f = validationFraction, !(f >= 0 && f < 1) {
            throw DataError(.invalidArgument, file: dir, "validation fraction must be in [0, 1), got \(f)")
        }
        let trainRoot = dir + "/train"
        if isDirectory(trainRoot) {
            let valName = validationFolderNames.first { isDirectory(dir + "/" + $0) }
            if let valName {
                if validationFraction != nil {
                    throw DataError(.layout, file: dir, "has a \(valName)/ folder: a validation fraction would split train/ as well; drop the fraction or the folder")
                }
                let valRoot = dir + "/" + valName
                let trainClasses = try ImageFolder.classNames(in: trainRoot, options: options, split: "train").classes
                let valClasses = try ImageFolder.classNames(in: valRoot, options: options, split: valName).classes
                let classes = Array(Set(trainClasses + valClasses)).sorted(by: PathOrder.precedes)
                let train = try ImageFolder(root: trainRoot, classes: classes, split: "train", options: options)
                try requireImagesInClassFolders(train.issues)
                let val = try ImageFolder(root: valRoot, classes: classes, split: valName, options: options)
                return ImageDataset(classes: classes, train: train.samples, validation: val.samples,
                                    issues: train.issues + val.issues, layout: "train/\(valName) folders")
            }
            return try single(trainRoot, split: "train", fraction: validationFraction, seed: seed, options: options)
        }
        return try single(dir, split: "", fraction: validationFraction, seed: seed, options: options)
    }

    private static func single(_ root: String, split: String, fraction: Double?, seed: UInt64, options: FolderOptions) throws -> ImageDataset {
        let folder = try ImageFolder(root: root, split: split, options: options)
        try requireImagesInClassFolders(folder.issues)
        guard let fraction, fraction > 0 else {
            return ImageDataset(classes: folder.classes, train: folder.samples, validation: [], issues: folder.issues, layout: "one folder")
        }
        let (train, validation) = stratifiedSplit(folder.samples, classCount: folder.classes.count, fraction: fraction, seed: seed)
        var issues = folder.issues
        let inValidation = Set(validation.map(\.classIndex))
        for (i, name) in folder.classes.enumerated() where !inValidation.contains(i) {
            issues.append(FolderIssue(.classMissing, path: root + "/" + name, split: "val"))
        }
        let percent = Int((fraction * 100).rounded())
        return ImageDataset(classes: folder.classes, train: train, validation: validation, issues: issues,
                            layout: "one folder split \(100 - percent)/\(percent) (seed \(seed))")
    }

    /// Each class's samples split on their own: `round(n * fraction)` of them, chosen by a
    /// shuffle seeded with (`seed`, class index), go to validation, at most `n - 1` so training
    /// keeps every class. Both parts keep ImageFolder order.
    public static func stratifiedSplit(_ samples: [Sample], classCount: Int, fraction: Double, seed: UInt64) -> (train: [Sample], validation: [Sample]) {
        var byClass = [[Int]](repeating: [], count: classCount)
        for (i, s) in samples.enumerated() where s.classIndex >= 0 && s.classIndex < classCount {
            byClass[s.classIndex].append(i)
        }
        var isValidation = [Bool](repeating: false, count: samples.count)
        for (c, members) in byClass.enumerated() where members.count > 1 {
            let count = min(members.count - 1, Int((Double(members.count) * fraction).rounded()))
            var rng = SeededRandom(seed: seed, stream: [0x5350_4C49_54, UInt64(c)])
            for i in rng.shuffled(members).prefix(count) { isValidation[i] = true }
        }
        var train: [Sample] = [], validation: [Sample] = []
        for (i, s) in samples.enumerated() {
            if isValidation[i] { validation.append(s) } else { train.append(s) }
        }
        return (train, validation)
    }

    /// Refuses a training class folder with no image in it, as torchvision's `ImageFolder` does
    /// (`FileNotFoundError: Found no valid file for the classes …`): its class could never be a
    /// target. A class with no folder in `train/` (only in `val/`) keeps its index, reported.
    /// - Throws: `DataError.layout` naming the first such folder and what it held instead.
    private static func requireImagesInClassFolders(_ issues: [FolderIssue]) throws {
        guard let empty = issues.first(where: { $0.kind == .emptyClass }) else { return }
        let inside = issues.filter { $0.path.hasPrefix(empty.path + "/") }
        let reasons: [(FolderIssue.Kind, String)] = [(.unsupportedFormat, "in formats ckpt does not decode (.tif, .webp)"),
                                                     (.hidden, "hidden"), (.notAnImage, "not images"), (.unreadable, "unreadable")]
        let counts = reasons.compactMap { kind, reason -> String? in
            let n = inside.filter { $0.kind == kind }.count
            return n == 0 ? nil : "\(n) \(reason)"
        }
        let held = counts.isEmpty ? "it holds no file" : "what it holds is left out: " + counts.joined(separator: ", ")
        throw DataError(.layout, file: empty.path,
                        "class folder without a training image (\(held)); torchvision's ImageFolder refuses it too: add images or remove the folder")
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}
