//! Layer names for an ONNX graph's nodes: the module paths the exporters record, so that
//! `--layer layer4` or `--layer features.8` means the same for a model opened from `.onnx` as
//! from its state dict. A module stands for its last node, as elsewhere.
//!
//! - `torch.onnx.export` (TorchScript) names a node after its scope: `/layer1/layer1.0/conv1/Conv`
//!   is the `Conv` of module `layer1.0.conv1`.
//! - `torch.onnx.export(..., dynamo=True)` records the scopes in the node's metadata
//!   (`pkg.torch.onnx.name_scopes = ['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']`).
//! - Other exporters' slash-separated names (tf2onnx: `model/block3_conv1/Conv2D`) read the
//!   same way; a name without slashes is taken as it is.

use std::collections::HashMap;

use super::proto::NodeProto;

/// The module path of a node, `None` for a node outside every module (a top-level `Flatten`);
/// `model_scope` (see [`model_scope`]) is left out of it.
pub fn module_path(node: &NodeProto, model_scope: Option<&str>) -> Option<String> {
    let scopes = node
        .metadata_props
        .iter()
        .find(|p| p.key.as_deref() == Some("pkg.torch.onnx.name_scopes"))
        .and_then(|p| p.value.as_deref());
    let segments: Vec<String> = match (scopes, node.name.as_deref()) {
        (Some(list), _) => {
            let mut items = python_list(list);
            items.pop(); // the operation's own name
            items
        }
        (None, Some(name)) if name.contains('/') => {
            let mut items: Vec<String> = name
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            items.pop(); // the operation type
            if model_scope.is_some_and(|m| items.first().is_some_and(|f| f == m)) {
                items.remove(0);
            }
            items
        }
        (None, Some(name)) if !name.is_empty() => vec![name.to_string()],
        (None, _) => Vec::new(),
    };
    join(&segments)
}

/// Items of a Python list of strings as `repr` prints it: `['', 'layer1', 'layer1.0']`.
fn python_list(text: &str) -> Vec<String> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// One path from nested scopes, each either a child's attribute name (`conv1` inside
/// `layer1.0`) or a full path already (`layer1.0` inside `layer1`).
fn join(segments: &[String]) -> Option<String> {
    let mut path = String::new();
    for seg in segments {
        let seg = seg.replace(['/', ' '], "_");
        if path.is_empty() || seg.starts_with(&format!("{path}.")) {
            path = seg;
        } else {
            path = format!("{path}.{seg}");
        }
    }
    (!path.is_empty()).then_some(path)
}

/// The scope every scoped node name shares, when there is one: tf2onnx names each node under
/// the Keras model's own name (`functional_1/block1_conv1_1/...`), which says nothing inside
/// the one model. (Keras 3 traces each layer under its name with a suffix TensorFlow adds to
/// keep scopes unique, `block1_conv1_1`; these are kept as they are.)
pub fn model_scope(nodes: &[NodeProto]) -> Option<String> {
    let mut scopes = nodes
        .iter()
        .filter_map(|n| n.name.as_deref())
        .filter(|name| name.contains('/'))
        .map(|name| name.split('/').find(|s| !s.is_empty()).unwrap_or(""));
    let first = scopes.next()?;
    scopes.all(|s| s == first).then(|| first.to_string())
}

/// Unique node names for nodes given as (module path, operation label): a module with one node
/// and no modules inside it is that node; otherwise each of its nodes is named
/// `module.label` (`layer1.0.add`), with `_2`, `_3` for repeats.
pub fn assign(nodes: &[(Option<String>, String)]) -> Vec<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (path, _) in nodes {
        if let Some(p) = path {
            *count.entry(p).or_default() += 1;
        }
    }
    let has_inner = |p: &str| {
        let prefix = format!("{p}.");
        count.keys().any(|k| k.starts_with(&prefix))
    };
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut unique = |base: String| {
        let n = taken.entry(base.clone()).or_default();
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}_{n}")
        }
    };
    nodes
        .iter()
        .map(|(path, label)| match path {
            Some(p) if count[p.as_str()] == 1 && !has_inner(p) => unique(p.clone()),
            Some(p) => unique(format!("{p}.{label}")),
            None => unique(label.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeProto {
        NodeProto {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn torchscript_scopes_become_module_paths() {
        let p = |n: &str| module_path(&node(n), None);
        assert_eq!(
            p("/layer1/layer1.0/conv1/Conv").as_deref(),
            Some("layer1.0.conv1")
        );
        assert_eq!(
            p("/features/features.8/Conv").as_deref(),
            Some("features.8")
        );
        assert_eq!(p("/layer1/layer1.0/Add").as_deref(), Some("layer1.0"));
        assert_eq!(p("/Flatten"), None);
        assert_eq!(p("Conv_12").as_deref(), Some("Conv_12"));
    }

    #[test]
    fn dynamo_scopes_become_module_paths() {
        let mut n = node("node_Conv_295");
        n.metadata_props
            .push(super::super::proto::StringStringEntryProto {
                key: Some("pkg.torch.onnx.name_scopes".into()),
                value: Some("['', 'layer1', 'layer1.0', 'layer1.0.bn1', 'batch_norm_1']".into()),
            });
        assert_eq!(module_path(&n, None).as_deref(), Some("layer1.0.bn1"));
    }

    #[test]
    fn a_model_scope_every_node_shares_is_left_out() {
        let nodes = [
            node("mobilenetv2_1.00_224_1/Conv1_1/convolution"),
            node("mobilenetv2_1.00_224_1/block_1_pad_1/Pad"),
            node("Transpose__44"),
        ];
        let scope = model_scope(&nodes);
        assert_eq!(scope.as_deref(), Some("mobilenetv2_1.00_224_1"));
        assert_eq!(
            module_path(&nodes[1], scope.as_deref()).as_deref(),
            Some("block_1_pad_1")
        );
        assert_eq!(
            model_scope(&[node("a/conv/Conv"), node("b/conv/Conv")]),
            None
        );
    }

    #[test]
    fn names_are_unique_and_modules_stand_for_their_last_node() {
        let s = |p: Option<&str>, l: &str| (p.map(str::to_string), l.to_string());
        let names = assign(&[
            s(Some("layer1.0.conv1"), "conv"),
            s(Some("layer1.0.relu"), "relu"),
            s(Some("layer1.0"), "add"),
            s(Some("layer1.0.relu"), "relu"),
            s(None, "flatten"),
        ]);
        assert_eq!(
            names,
            [
                "layer1.0.conv1",
                "layer1.0.relu.relu",
                "layer1.0.add",
                "layer1.0.relu.relu_2",
                "flatten"
            ]
        );
    }
}
