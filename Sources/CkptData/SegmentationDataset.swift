import Foundation

/// One image of a segmentation dataset and the mask of its class indices.
public struct SegmentationSample: Sendable, Equatable {
    /// The image file.
    public var imagePath: String
    /// The mask file (a palette or grey PNG whose values are class indices).
    public var maskPath: String
    /// A second image of the same scene (`images2/`, a two-input model's x2), or nil.
    public var secondImagePath: String?

    /// A pair of files (with a second image, a triple).
    public init(imagePath: String, maskPath: String, secondImagePath: String? = nil) {
        self.imagePath = imagePath
        self.maskPath = maskPath
        self.secondImagePath = secondImagePath
    }
}

/// A segmentation dataset: `DIR/images/…` beside `DIR/masks/…` (or the same under `DIR/train/`
/// and `DIR/val/`), an image and a mask paired by their path without extension
/// (`images/a/001.jpg` with `masks/a/001.png`).
///
/// Unpaired files and duplicate stems are reported, never guessed at. Samples are in the byte
/// order of the image paths. PyTorch counterpart: the usual hand-written `Dataset` of the
/// SegNet/VOC tutorials (`Image.open(img).convert("RGB")`, `Image.open(mask)`).
public struct SegmentationDataset: Sendable {
    /// Training pairs.
    public var train: [SegmentationSample]
    /// Validation pairs (empty without a validation split).
    public var validation: [SegmentationSample]
    /// Entries left out or worth a look.
    public var issues: [FolderIssue]
    /// `"train/val folders"`, `"one folder split 80/20 (seed 0)"`, `"one folder"` (the folder
    /// itself, or `train/` when there is no validation folder).
    public var layout: String

    /// Reads the dataset at `dir`.
    /// - Parameters:
    ///   - validationFraction: for a single `images/` + `masks/` pair of folders, the share of
    ///     pairs (rounded, at most all but one) moved to validation, chosen by `seed`.
    /// - Throws: `DataError.layout` when `dir` has neither `images/` + `masks/` nor
    ///   `train/images/` + `train/masks/`, or a fraction is given beside a validation folder;
    ///   `DataError.io` when a folder cannot be listed.
    ///   - secondImages: pair each image with the file of the same stem under `images2/` beside
    ///     `images/` (a two-input model's x2); images without one are reported as unpaired.
    public static func load(_ dir: String, validationFraction: Double? = nil, seed: UInt64 = 0,
                            options: FolderOptions = FolderOptions(), secondImages: Bool = false) throws -> SegmentationDataset {
        if let f = validationFraction, !(f >= 0 && f < 1) {
            throw DataError(.invalidArgument, file: dir, "validation fraction must be in [0, 1), got \(f)")
        }
        if ImageDataset.isDirectory(dir + "/train/images") {
            let train = try pairs(dir + "/train", split: "train", options: options, secondImages: secondImages)
            if let valName = ImageDataset.validationFolderNames.first(where: { ImageDataset.isDirectory(dir + "/" + $0 + "/images") }) {
                if validationFraction != nil {
                    throw DataError(.layout, file: dir, "has a \(valName)/ folder: a validation fraction would split train/ as well; drop the fraction or the folder")
                }
                let val = try pairs(dir + "/" + valName, split: valName, options: options, secondImages: secondImages)
                return SegmentationDataset(train: train.samples, validation: val.samples, issues: train.issues + val.issues, layout: "train/\(valName) folders")
            }
            return split(train, fraction: validationFraction, seed: seed)
        }
        guard ImageDataset.isDirectory(dir + "/images") else {
            throw DataError(.layout, file: dir, "expected images/ and masks/ folders (or train/images/ and train/masks/)")
        }
        return split(try pairs(dir, split: "", options: options, secondImages: secondImages), fraction: validationFraction, seed: seed)
    }

    private static func split(_ all: (samples: [SegmentationSample], issues: [FolderIssue]), fraction: Double?, seed: UInt64) -> SegmentationDataset {
        guard let fraction, fraction > 0, all.samples.count > 1 else {
            return SegmentationDataset(train: all.samples, validation: [], issues: all.issues, layout: "one folder")
        }
        let count = min(all.samples.count - 1, Int((Double(all.samples.count) * fraction).rounded()))
        var rng = SeededRandom(seed: seed, stream: [0x5345_47])
        let chosen = Set(rng.shuffled(Array(all.samples.indices)).prefix(count))
        var train: [SegmentationSample] = [], validation: [SegmentationSample] = []
        for (i, s) in all.samples.enumerated() {
            if chosen.contains(i) { validation.append(s) } else { train.append(s) }
        }
        let percent = Int((fraction * 100).rounded())
        return SegmentationDataset(train: train, validation: validation, issues: all.issues,
                                   layout: "one folder split \(100 - percent)/\(percent) (seed \(seed))")
    }

    /// The pairs under `root/images` and `root/masks` (triples with `root/images2`).
    private static func pairs(_ root: String, split: String, options: FolderOptions,
                              secondImages: Bool) throws -> (samples: [SegmentationSample], issues: [FolderIssue]) {
        guard ImageDataset.isDirectory(root + "/masks") else {
            throw DataError(.layout, file: root, "has images/ but no masks/ folder")
        }
        if secondImages, !ImageDataset.isDirectory(root + "/images2") {
            throw DataError(.layout, file: root, "has images/ and masks/ but no images2/ folder (the second input's images, named as in images/)")
        }
        var issues: [FolderIssue] = []
        let images = try files(root + "/images", split: split, options: options, issues: &issues)
        let masks = try files(root + "/masks", split: split, options: options, issues: &issues)
        let seconds = secondImages ? try files(root + "/images2", split: split, options: options, issues: &issues) : []
        let imageByStem = unique(images, split: split, issues: &issues)
        let maskByStem = unique(masks, split: split, issues: &issues)
        let secondByStem = unique(seconds, split: split, issues: &issues)
        var samples: [SegmentationSample] = []
        for (stem, image) in imageByStem.sorted(by: { PathOrder.precedes($0.value, $1.value) }) {
            if let mask = maskByStem[stem], !secondImages || secondByStem[stem] != nil {
                samples.append(SegmentationSample(imagePath: image, maskPath: mask, secondImagePath: secondByStem[stem]))
            } else {
                issues.append(FolderIssue(.unpaired, path: image, split: split))
            }
        }
        for (byStem, partners) in [(maskByStem, imageByStem), (secondByStem, imageByStem)] {
            for (stem, path) in byStem.sorted(by: { PathOrder.precedes($0.value, $1.value) }) where partners[stem] == nil {
                issues.append(FolderIssue(.unpaired, path: path, split: split))
            }
        }
        return (samples, issues)
    }

    /// Stem (path below the folder, without the last extension) → path; later duplicates reported.
    private static func unique(_ paths: [(stem: String, path: String)], split: String, issues: inout [FolderIssue]) -> [String: String] {
        var out: [String: String] = [:]
        for (stem, path) in paths {
            if out[stem] == nil { out[stem] = path } else { issues.append(FolderIssue(.duplicateStem, path: path, split: split)) }
        }
        return out
    }

    /// Every image file below `folder` in byte order, with its stem; other files reported.
    private static func files(_ folder: String, split: String, options: FolderOptions, issues: inout [FolderIssue]) throws -> [(stem: String, path: String)] {
        var out: [(stem: String, path: String)] = []
        var visited: [[UInt64]] = []
        func walk(_ dir: String, _ prefix: String) throws {
            guard let id = PathOrder.identity(dir), !visited.contains(id) else {
                issues.append(FolderIssue(.linkCycle, path: dir, split: split))
                return
            }
            visited.append(id)
            defer { visited.removeLast() }
            let listing = try DirectoryListing(dir)
            issues += listing.undecodable.map { FolderIssue(.unreadable, path: dir + "/" + $0, split: split) }
            for entry in listing.entries {
                let path = dir + "/" + entry.name
                if FolderOptions.isHidden(entry.name) {
                    issues.append(FolderIssue(.hidden, path: path, split: split))
                    if !options.includeHidden { continue }
                }
                if entry.isDirectory {
                    try walk(path, prefix + entry.name + "/")
                } else if ImageExtensions.matches(entry.name, ImageExtensions.decodable) {
                    let stem = entry.name.lastIndex(of: ".").map { String(entry.name[..<$0]) } ?? entry.name
                    out.append((prefix + stem, path))
                } else if ImageExtensions.matches(entry.name, ImageExtensions.torchvision) {
                    issues.append(FolderIssue(.unsupportedFormat, path: path, split: split))
                } else {
                    issues.append(FolderIssue(.notAnImage, path: path, split: split))
                }
            }
        }
        try walk(folder, "")
        return out.sorted { PathOrder.precedes($0.path, $1.path) }
    }
}
