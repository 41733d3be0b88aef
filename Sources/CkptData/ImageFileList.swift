import Foundation

/// The image files named on a command line: a file as it is, or every image file below a folder.
///
/// A folder is walked recursively (class folders included, symbolic links followed, cycles
/// stopped) and its images are listed by full path in Python's string order (code points), so
/// `DIR/5/0033.png` precedes `DIR/6/0006.png` and `a-b.png` precedes `a/x.png`. Hidden entries,
/// files without a `.jpg` / `.jpeg` / `.png` extension and unreadable names are left out and
/// reported in `issues`; nothing is dropped without a word. A file named directly is kept
/// whatever its extension: the decoder reads its first bytes.
/// PyTorch counterpart: none in torchvision; the `sorted(glob(DIR/**/*.jpg))` of inference scripts.
public struct ImageFileList: Sendable, Equatable {
    /// The image files, each path as given (a folder's joined with `/`).
    public var paths: [String]
    /// Entries of the folders left out: hidden, not an image, an unsupported image format,
    /// unreadable, a link cycle.
    public var issues: [FolderIssue]

    /// A list of `paths` with no issues.
    public init(paths: [String], issues: [FolderIssue] = []) {
        self.paths = paths
        self.issues = issues
    }

    /// The images `inputs` name, in the order given, each folder expanded in place.
    /// - Throws: `DataError.io` naming an input that does not exist or a folder that cannot be
    ///   listed; `DataError.layout` for a folder holding no image file.
    public static func collect(_ inputs: [String], options: FolderOptions = FolderOptions()) throws -> ImageFileList {
        var out = ImageFileList(paths: [])
        for input in inputs {
            var st = stat()
            guard stat(input, &st) == 0 else {
                throw DataError(.io, file: input, "cannot read: \(String(cString: strerror(errno)))")
            }
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                out.paths.append(input)
                continue
            }
            let folder = try ImageFileList.folder(input, options: options)
            guard !folder.paths.isEmpty else {
                throw DataError(.layout, file: input, "no image file (.jpg, .jpeg, .png) in the folder or below it")
            }
            out.paths += folder.paths
            out.issues += folder.issues
        }
        return out
    }

    /// Every image file below `root`, by full path in code-point order.
    /// - Throws: `DataError.io` when `root` cannot be listed (folders below it that cannot be are
    ///   reported as `.unreadable`).
    public static func folder(_ root: String, options: FolderOptions = FolderOptions()) throws -> ImageFileList {
        let base = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        _ = try DirectoryListing(base) // the root's own failure is an error, not an issue
        var out = ImageFileList(paths: [])
        var visited: [[UInt64]] = []
        walk(base, options: options, visited: &visited, into: &out)
        out.paths.sort(by: PathOrder.precedes)
        return out
    }

    private static func walk(_ dir: String, options: FolderOptions, visited: inout [[UInt64]], into out: inout ImageFileList) {
        guard let id = PathOrder.identity(dir), !visited.contains(id) else {
            out.issues.append(FolderIssue(.linkCycle, path: dir))
            return
        }
        let listing: DirectoryListing
        do { listing = try DirectoryListing(dir) } catch {
            out.issues.append(FolderIssue(.unreadable, path: dir))
            return
        }
        visited.append(id)
        defer { visited.removeLast() }
        out.issues += listing.undecodable.map { FolderIssue(.unreadable, path: dir + "/" + $0) }
        for entry in listing.entries {
            let path = dir + "/" + entry.name
            if FolderOptions.isHidden(entry.name) {
                out.issues.append(FolderIssue(.hidden, path: path))
                if !options.includeHidden { continue }
            }
            if entry.isDirectory {
                walk(path, options: options, visited: &visited, into: &out)
            } else if ImageExtensions.matches(entry.name, ImageExtensions.decodable) {
                out.paths.append(path)
            } else if ImageExtensions.matches(entry.name, ImageExtensions.torchvision) {
                out.issues.append(FolderIssue(.unsupportedFormat, path: path))
            } else {
                out.issues.append(FolderIssue(.notAnImage, path: path))
            }
        }
    }
}
