/// One rule of a transplant, as the user wrote it or as a recipe or `--auto` supplied it.
///
/// Rules are data: `CkptSurgery` applies them to keys, never to modules.
public struct TransplantRule: Sendable, Hashable {
    /// What the rule does to keys.
    public enum Action: Sendable, Hashable {
        /// `--map [CONTAINER.]A:B=DST`: children `[A, B)` of a numbered container become `DST.0 …`,
        /// renumbered from 0 as `nn.Sequential(*container[A:B])` renumbers them. `container` nil
        /// means the source's first numbered container (`features` in VGG); `end` nil means to the end.
        case slice(container: String?, start: Int, end: Int?, target: String)
        /// `--map SRC=DST`: the module `SRC` (and everything below it) becomes `DST`.
        case move(source: String, target: String)
        /// `--rename REGEX=REPLACEMENT`: applied to every key it matches, after the maps.
        case rename(pattern: String, replacement: String)
        /// `--drop REGEX`: source keys it matches are never used.
        case drop(pattern: String)
    }

    /// Where a rule came from, for the plan.
    public enum Origin: Sendable, Hashable {
        /// Given on the command line.
        case user
        /// From the target model's recipe (`segnet` ← `vgg19_bn`).
        case recipe(String)
        /// Proposed by `--auto`, with a confidence in [0, 1].
        case auto(confidence: Double)
    }

    /// What the rule does.
    public var action: Action
    /// Where it came from.
    public var origin: Origin

    /// A rule.
    public init(_ action: Action, origin: Origin = .user) {
        self.action = action
        self.origin = origin
    }

    /// The target block a map writes (nil for renames and drops).
    public var targetBlock: String? {
        switch action {
        case let .slice(_, _, _, t), let .move(_, t): return t
        case .rename, .drop: return nil
        }
    }

    /// The rule as a flag a user can paste (`--map features.3:7=enc1`).
    public var flag: String {
        switch action {
        case let .slice(c, a, b, t):
            return "--map " + (c.map { $0 + "." } ?? "") + "\(a):" + (b.map(String.init) ?? "") + "=" + t
        case let .move(s, t): return "--map \(s)=\(t)"
        case let .rename(p, r): return "--rename '\(p)=\(r)'"
        case let .drop(p): return "--drop '\(p)'"
        }
    }

    /// The rule without the flag name (`features.3:7=enc1`), for reports.
    public var text: String {
        let f = flag
        guard let space = f.firstIndex(of: " ") else { return f }
        return String(f[f.index(after: space)...])
    }

    /// Where it came from, as reports say it (`user`, `recipe segnet`, `auto 0.95`).
    public var originText: String {
        switch origin {
        case .user: return "user"
        case let .recipe(r): return "recipe \(r)"
        case let .auto(c): return "auto " + String(Double(Int(c * 100)) / 100)
        }
    }

    /// Parses a `--map` value: `A:B=DST`, `A:=DST`, `CONTAINER.A:B=DST`, or `SRC=DST`.
    /// - Throws: `SurgeryError.badRule` naming the text.
    public static func map(_ text: String, origin: Origin = .user) throws -> TransplantRule {
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, isModulePath(parts[1]) else {
            throw SurgeryError(.badRule, "--map '\(text)': expected A:B=BLOCK, CONTAINER.A:B=BLOCK or MODULE=BLOCK")
        }
        let (lhs, target) = (parts[0], parts[1])
        guard lhs.contains(":") else {
            guard isModulePath(lhs) else { throw SurgeryError(.badRule, "--map '\(text)': '\(lhs)' is not a module path") }
            return TransplantRule(.move(source: lhs, target: target), origin: origin)
        }
        var container: String?
        var range = Substring(lhs)
        if let dot = lhs.lastIndex(of: ".") {
            container = String(lhs[..<dot])
            range = lhs[lhs.index(after: dot)...]
            guard let c = container, isModulePath(c) else {
                throw SurgeryError(.badRule, "--map '\(text)': '\(lhs[..<dot])' is not a module path")
            }
        }
        let bounds = range.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard bounds.count == 2, let start = bounds[0].isEmpty ? 0 : Int(bounds[0]), start >= 0 else {
            throw SurgeryError(.badRule, "--map '\(text)': the slice must be A:B with 0 <= A < B (B may be left out)")
        }
        var end: Int?
        if !bounds[1].isEmpty {
            guard let b = Int(bounds[1]), b > start else {
                throw SurgeryError(.badRule, "--map '\(text)': the slice must be A:B with 0 <= A < B (B may be left out)")
            }
            end = b
        }
        return TransplantRule(.slice(container: container, start: start, end: end, target: target), origin: origin)
    }

    /// Parses a `--rename` value `REGEX=REPLACEMENT` (`$1` or `\1` for groups).
    /// - Throws: `SurgeryError.badRule` for a missing `=` or a bad regular expression.
    public static func rename(_ text: String) throws -> TransplantRule {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw SurgeryError(.badRule, "--rename '\(text)': expected REGEX=REPLACEMENT")
        }
        let pattern = String(text[..<eq])
        _ = try KeyPattern(pattern, flag: "--rename")
        return TransplantRule(.rename(pattern: pattern, replacement: String(text[text.index(after: eq)...])))
    }

    /// Parses a `--drop` value, a regular expression.
    /// - Throws: `SurgeryError.badRule` for a bad regular expression.
    public static func drop(_ pattern: String) throws -> TransplantRule {
        _ = try KeyPattern(pattern, flag: "--drop")
        return TransplantRule(.drop(pattern: pattern))
    }

    /// True for `a.b.0`-like paths: dot-separated non-empty parts without spaces or `=`.
    static func isModulePath(_ s: String) -> Bool {
        !s.isEmpty && s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { part in
            !part.isEmpty && part.allSatisfy { !$0.isWhitespace && $0 != "=" && $0 != ":" }
        }
    }
}

/// A regular expression over keys (searched, as Python's `re.search`), with `$1` / `\1`
/// group references in replacements.
struct KeyPattern {
    let regex: Regex<AnyRegexOutput>

    /// Compiles `pattern`.
    /// - Throws: `SurgeryError.badRule` naming `flag`.
    init(_ pattern: String, flag: String) throws {
        do {
            regex = try Regex(pattern)
        } catch {
            throw SurgeryError(.badRule, "\(flag) '\(pattern)': not a regular expression (\(error))")
        }
    }

    /// True when the pattern occurs in `key`.
    func matches(_ key: String) -> Bool { key.contains(regex) }

    /// `key` with every occurrence replaced (`re.sub`), or nil when nothing matched.
    func replacing(in key: String, with replacement: String) -> String? {
        guard matches(key) else { return nil }
        return key.replacing(regex) { match in
            var out = ""
            var chars = replacement[...]
            while let c = chars.first {
                chars = chars.dropFirst()
                if c == "$" || c == "\\", let d = chars.first, let n = d.wholeNumberValue {
                    chars = chars.dropFirst()
                    if n < match.output.count, let sub = match.output[n].substring { out += sub }
                } else {
                    out.append(c)
                }
            }
            return out
        }
    }
}
