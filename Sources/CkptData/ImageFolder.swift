import Foundation

/// One image of a classification dataset.
/// PyTorch counterpart: an entry `(path, class_index)` of `ImageFolder.samples`.
public struct Sample: Sendable, Equatable {
    /// The file, as torchvision joins it (`root/class/…/name`).
    public var path: String
    /// Index into the dataset's class list.
    public var classIndex: Int

    /// A sample of `path` in class `classIndex`.
    public init(path: String, classIndex: Int) {
        self.path = path
        self.classIndex = classIndex
    }
}

/// Something in a dataset folder the caller should decide about; nothing is dropped or indexed
/// silently, every such entry is listed here.
public struct FolderIssue: Sendable, Equatable, CustomStringConvertible {
    /// What kind of entry.
    public enum Kind: String, Sendable {
        /// A name starting with `.` or `__MACOSX` (`.DS_Store`, `.ipynb_checkpoints`, AppleDouble
        /// `._x.jpg`): torchvision indexes these; ckpt leaves them out unless `includeHidden`.
        case hidden
        /// A file without one of torchvision's image extensions: left out, as torchvision does.
        case notAnImage
        /// An image extension ckpt cannot decode (`.webp`, `.tif`, `.tiff`): left out.
        case unsupportedFormat
        /// A class folder holding no image in this split (torchvision: `FileNotFoundError`).
        case emptyClass
        /// A class of the dataset with no folder in this split: its index is kept.
        case classMissing
        /// A class folder that is not in the class list given (a class only another split
        /// lacks never is: the list is their union): its images are left out.
        case unknownClass
        /// A file directly in a split folder, beside the class folders: left out, as torchvision does.
        case strayFile
        /// A name that is not valid UTF-8, or a folder that could not be listed: left out.
        case unreadable
        /// A symbolic link back into a folder being walked: not followed again.
        case linkCycle
        /// A segmentation image without a mask of the same stem, or a mask without an image.
        case unpaired
        /// Two images (or two masks) of one stem: the first in byte order is paired, this one left out.
        case duplicateStem
    }

    /// What kind of entry.
    public var kind: Kind
    /// The entry's path (for class-level issues, the class folder's, even when it is missing).
    public var path: String
    /// The split (`"train"`, `"val"`, or `""` for a single folder).
    public var split: String

    /// An issue of `kind` about `path` in `split`.
    public init(_ kind: Kind, path: String, split: String = "") {
        self.kind = kind
        self.path = path
        self.split = split
    }

    /// `kind: path` (with the split when there is one).
    public var description: String {
        split.isEmpty ? "\(kind.rawValue): \(path)" : "\(kind.rawValue) (\(split)): \(path)"
    }

    /// The issue in words for people: `path: what happened` (with the split when there is one).
    public var message: String {
        let what: String
        switch kind {
        case .hidden: what = "hidden, left out (torchvision would index it)"
        case .notAnImage: what = "not an image file, left out (as torchvision does)"
        case .unsupportedFormat: what = "an image format ckpt does not decode (.tif, .webp), left out"
        case .emptyClass: what = "a class folder holding no image"
        case .classMissing: what = "a class with no folder here; its index is kept"
        case .unknownClass: what = "a class folder not in the class list, left out"
        case .strayFile: what = "a file beside the class folders, left out (as torchvision does)"
        case .unreadable: what = "a name that is not UTF-8 or a folder that cannot be listed, left out"
        case .linkCycle: what = "a link back into a folder being walked, not followed again"
        case .unpaired: what = "no image or mask of the same name, left out"
        case .duplicateStem: what = "a second file of the same name stem, left out"
        }
        return "\(path)\(split.isEmpty ? "" : " (\(split))"): \(what)"
    }
}

/// How to read a folder of class folders.
public struct FolderOptions: Sendable, Equatable {
    /// Index hidden class folders and files (names starting with `.`, and `__MACOSX`) as
    /// torchvision does; by default they are left out and reported.
    public var includeHidden: Bool

    /// Options with hidden entries left out (and reported).
    public init(includeHidden: Bool = false) {
        self.includeHidden = includeHidden
    }

    static func isHidden(_ name: String) -> Bool {
        name.hasPrefix(".") || name == "__MACOSX"
    }
}

/// A folder of class folders read as torchvision's `ImageFolder` reads it.
///
/// Classes are the sub-folders sorted by name; samples come class by class, each class's
/// folder walked recursively (links followed) with folders and then files sorted in Python's
/// order (code points, i.e. UTF-8 bytes); a file is an image when its lower-cased name ends in
/// one of `IMG_EXTENSIONS`. PyTorch counterpart: `torchvision.datasets.ImageFolder(root)`.
public struct ImageFolder: Sendable {
    /// The folder read.
    public var root: String
    /// Class names, sorted; a sample's `classIndex` points here.
    public var classes: [String]
    /// The images in ImageFolder order.
    public var samples: [Sample]
    /// Entries left out or worth a look.
    public var issues: [FolderIssue]

    /// The class folder names of `root`, sorted (torchvision's `find_classes`), hidden ones
    /// (reported) excluded unless `options.includeHidden`.
    /// - Throws: `DataError.io` when `root` cannot be listed.
    public static func classNames(in root: String, options: FolderOptions = FolderOptions(), split: String = "") throws -> (classes: [String], issues: [FolderIssue]) {
        let listing = try DirectoryListing(root)
        var classes: [String] = []
        var issues = listing.undecodable.map { FolderIssue(.unreadable, path: root + "/" + $0, split: split) }
        for entry in listing.entries {
            let path = root + "/" + entry.name
            if FolderOptions.isHidden(entry.name) {
                issues.append(FolderIssue(.hidden, path: path, split: split))
                if !options.includeHidden || !entry.isDirectory { continue }
            }
            if entry.isDirectory {
                classes.append(entry.name)
            } else {
                issues.append(FolderIssue(.strayFile, path: path, split: split))
            }
        }
        return (classes, issues)
    }

    /// Reads `root`.
    /// - Parameters:
    ///   - classes: the class list to index against (one map across splits); `nil` for the
    ///     class folders of `root`. A listed class without a folder is reported `.classMissing`.
    ///   - split: the name put in issues.
    /// - Throws: `DataError.io` when `root` cannot be listed; `DataError.layout` when it has no
    ///   class folder and no class list is given.
    public init(root: String, classes: [String]? = nil, split: String = "", options: FolderOptions = FolderOptions()) throws {
        let found = try ImageFolder.classNames(in: root, options: options, split: split)
        let classList = classes ?? found.classes
        if classList.isEmpty {
            throw DataError(.layout, file: root, "no class folders: expected one folder per class, each holding images")
        }
        var issues = found.issues
        var samples: [Sample] = []
        let present = Set(found.classes)
        for (index, name) in classList.enumerated() {
            let dir = root + "/" + name
            guard present.contains(name) else {
                issues.append(FolderIssue(.classMissing, path: dir, split: split))
                continue
            }
            let before = samples.count
            var visited: [[UInt64]] = []
            ImageFolder.walk(dir, classIndex: index, split: split, options: options, visited: &visited, samples: &samples, issues: &issues)
            if samples.count == before { issues.append(FolderIssue(.emptyClass, path: dir, split: split)) }
        }
        let listed = Set(classList)
        for name in found.classes where !listed.contains(name) {
            issues.append(FolderIssue(.unknownClass, path: root + "/" + name, split: split))
        }
        self.root = root
        self.classes = classList
        self.samples = samples
        self.issues = issues
    }

    /// `sorted(os.walk(dir, followlinks=True))` then `sorted(fnames)`, as torchvision's
    /// `make_dataset` walks: every folder below `dir` (itself included) in the order of its full
    /// path, so `sub-a` comes before `sub/deeper` (`-` < `/`), each folder's files by name.
    private static func walk(_ dir: String, classIndex: Int, split: String, options: FolderOptions, visited: inout [[UInt64]],
                             samples: inout [Sample], issues: inout [FolderIssue]) {
        var folders: [String] = []
        collectFolders(dir, split: split, options: options, visited: &visited, into: &folders, issues: &issues)
        folders.sort(by: PathOrder.precedes)
        for folder in folders {
            guard let listing = try? DirectoryListing(folder) else { continue } // reported while collecting
            for entry in listing.entries where !entry.isDirectory {
                let path = folder + "/" + entry.name
                if FolderOptions.isHidden(entry.name) {
                    issues.append(FolderIssue(.hidden, path: path, split: split))
                    if !options.includeHidden { continue }
                }
                if ImageExtensions.matches(entry.name, ImageExtensions.decodable) {
                    samples.append(Sample(path: path, classIndex: classIndex))
                } else if ImageExtensions.matches(entry.name, ImageExtensions.torchvision) {
                    issues.append(FolderIssue(.unsupportedFormat, path: path, split: split))
                } else {
                    issues.append(FolderIssue(.notAnImage, path: path, split: split))
                }
            }
        }
    }

    /// `dir` and every folder below it, stopping at link cycles and (unless included) hidden folders.
    private static func collectFolders(_ dir: String, split: String, options: FolderOptions, visited: inout [[UInt64]],
                                       into folders: inout [String], issues: inout [FolderIssue]) {
        guard let id = PathOrder.identity(dir), !visited.contains(id) else {
            issues.append(FolderIssue(.linkCycle, path: dir, split: split))
            return
        }
        let listing: DirectoryListing
        do { listing = try DirectoryListing(dir) } catch {
            issues.append(FolderIssue(.unreadable, path: dir, split: split))
            return
        }
        visited.append(id)
        defer { visited.removeLast() }
        folders.append(dir)
        issues += listing.undecodable.map { FolderIssue(.unreadable, path: dir + "/" + $0, split: split) }
        for entry in listing.entries where entry.isDirectory {
            let path = dir + "/" + entry.name
            if FolderOptions.isHidden(entry.name) {
                issues.append(FolderIssue(.hidden, path: path, split: split))
                if !options.includeHidden { continue }
            }
            collectFolders(path, split: split, options: options, visited: &visited, into: &folders, issues: &issues)
        }
    }
}
