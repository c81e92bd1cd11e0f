//! The layer tree: modules containing modules, derived from the dotted node names.

use super::graph::{Graph, NodeId};

/// A module (a name prefix) or a single node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeNode {
    /// Full dotted path, e.g. `layer4.1`; empty for the root.
    pub path: String,
    /// Last segment of the path, e.g. `1`.
    pub label: String,
    /// The node the path stands for: the node itself, or a module's last node (its output).
    pub output: NodeId,
    /// Whether this is a graph node rather than a module grouping nodes.
    pub is_node: bool,
    /// Parameters in this node or everything below it.
    pub parameters: usize,
    pub children: Vec<TreeNode>,
}

impl TreeNode {
    /// Depth-first visit of every entry below the root, with its depth (children of the root
    /// have depth 0).
    pub fn walk(&self, f: &mut impl FnMut(&TreeNode, usize)) {
        fn go(n: &TreeNode, depth: usize, f: &mut impl FnMut(&TreeNode, usize)) {
            f(n, depth);
            for c in &n.children {
                go(c, depth + 1, f);
            }
        }
        for c in &self.children {
            go(c, 0, f);
        }
    }
}

/// Builds the tree of a graph; children keep the order of their first node.
pub fn layer_tree(graph: &Graph) -> TreeNode {
    let mut root = TreeNode {
        path: String::new(),
        label: String::new(),
        output: graph.output(),
        is_node: false,
        parameters: 0,
        children: Vec::new(),
    };
    for (id, node) in graph.nodes().iter().enumerate() {
        let params = node.op.parameter_count();
        let parts: Vec<&str> = node.name.split('.').collect();
        let mut cur = &mut root;
        cur.parameters += params;
        for (depth, part) in parts.iter().enumerate() {
            let path = parts[..=depth].join(".");
            let pos = match cur.children.iter().position(|c| c.path == path) {
                Some(p) => p,
                None => {
                    cur.children.push(TreeNode {
                        path,
                        label: part.to_string(),
                        output: id,
                        is_node: false,
                        parameters: 0,
                        children: Vec::new(),
                    });
                    cur.children.len() - 1
                }
            };
            cur = &mut cur.children[pos];
            cur.output = id;
            cur.parameters += params;
        }
        cur.is_node = true;
    }
    root
}
