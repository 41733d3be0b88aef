import Foundation

/// What a folder holds, read with POSIX calls so names are seen exactly as stored: each entry's
/// name and whether it is a directory (symbolic links followed, as `os.scandir(...).is_dir()`
/// and `os.walk(followlinks=True)` do).
struct DirectoryListing {
    struct Entry {
        var name: String
        var isDirectory: Bool
    }

    var entries: [Entry] = []
    /// Names that are not valid UTF-8 (they cannot round-trip through a Swift `String`).
    var undecodable: [String] = []

    /// The entries of `path`, excluding `.` and `..`, sorted by name in byte order.
    /// - Throws: `DataError.io` when the folder cannot be opened.
    init(_ path: String) throws {
        guard let dir = opendir(path) else {
            throw DataError(.io, file: path, "cannot list the folder: \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if bytes == [0x2E] || bytes == [0x2E, 0x2E] { continue }
            guard let name = String(validating: bytes, as: UTF8.self) else {
                undecodable.append(String(decoding: bytes, as: UTF8.self))
                continue
            }
            var st = stat()
            let isDirectory = stat(path + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
            entries.append(Entry(name: name, isDirectory: isDirectory))
        }
        entries.sort { PathOrder.precedes($0.name, $1.name) }
    }
}

/// Python's string order, which torchvision's `sorted` uses: by code point, the same as UTF-8
/// byte order (Swift's `<` on `String` compares canonical equivalents and differs).
enum PathOrder {
    static func precedes(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// `(device, inode)` of a directory, to stop at symbolic-link cycles.
    static func identity(_ path: String) -> [UInt64]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return [UInt64(st.st_dev), UInt64(st.st_ino)]
    }
}

/// torchvision's `IMG_EXTENSIONS`, and which of them ckpt decodes.
public enum ImageExtensions {
    /// `(".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")`.
    public static let torchvision = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"]
    /// The ones whose formats ckpt decodes (JPEG, PNG, netpbm's PPM and PGM, BMP).
    public static let decodable = [".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp"]

    /// True when the lower-cased name ends with one of `extensions` (torchvision's
    /// `has_file_allowed_extension`).
    public static func matches(_ name: String, _ extensions: [String]) -> Bool {
        // extensions are ASCII: lower-casing the tail is enough
        let tail = String(name.suffix(6)).lowercased()
        return extensions.contains { tail.hasSuffix($0) }
    }
}
