import CkptFormat

/// Keys grouped into the module tree they name: `layer1.0.conv1.weight` is tensor `weight` of
/// module `conv1` inside `0` inside `layer1`.
struct ModuleTree {
    final class Node {
        let name: String
        var children: [Node] = []
        var tensors: [String] = []
        var elements = 0
        init(_ name: String) { self.name = name }

        func child(_ name: String) -> Node {
            if let c = children.last, c.name == name { return c }
            if let c = children.first(where: { $0.name == name }) { return c }
            let c = Node(name)
            children.append(c)
            return c
        }
    }

    let root = Node("")

    init(_ keys: [(String, Int)]) {
        for (key, n) in keys {
            var parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            let leaf = parts.removeLast()
            var node = root
            node.elements += n
            for p in parts {
                node = node.child(p)
                node.elements += n
            }
            node.tensors.append(leaf)
        }
    }

    func render() -> String {
        var lines = ["(model) \(CLI.grouped(root.elements)) elements"]
        if !root.tensors.isEmpty { lines[0] += "  " + root.tensors.joined(separator: " ") }
        func walk(_ n: Node, _ indent: String) {
            for (i, c) in n.children.enumerated() {
                let last = i == n.children.count - 1
                var line = indent + (last ? "└─ " : "├─ ") + c.name + " (\(CLI.grouped(c.elements)))"
                if !c.tensors.isEmpty { line += "  " + c.tensors.joined(separator: " ") }
                lines.append(line)
                walk(c, indent + (last ? "   " : "│  "))
            }
        }
        walk(root, "")
        return lines.joined(separator: "\n")
    }

    func json() -> JSONValue {
        func node(_ n: Node) -> JSONValue {
            .object([
                ("name", .string(n.name)), ("elements", .int(n.elements)),
                ("tensors", .array(n.tensors.map { .string($0) })),
                ("children", .array(n.children.map(node))),
            ])
        }
        return node(root)
    }
}
