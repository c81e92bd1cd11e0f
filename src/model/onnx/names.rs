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

/// One path from nested scopes. The TorchScript exporter names a scope relative to an
/// ancestor (`layer1.0` inside `layer1`, `downsample.0` inside `layer1.0.downsample`,
/// `block.0.0` inside `features.1.0.block.0`); the dynamo exporter gives full paths
/// (`layer1.0.conv1` inside `layer1.0`). Either way the segment overlaps the path so far: the
/// longest end of the path that starts the segment is written once.
fn join(segments: &[String]) -> Option<String> {
    let mut path: Vec<String> = Vec::new();
    for seg in segments {
        let seg: Vec<String> = seg
            .replace(['/', ' '], "_")
            .split('.')
            .map(str::to_string)
            .collect();
        let overlap = (1..seg.len().min(path.len() + 1))
            .rev()
            .find(|&k| path[path.len() - k..] == seg[..k])
            .unwrap_or(0);
        path.extend(seg[overlap..].iter().cloned());
    }
    (!path.is_empty()).then(|| path.join("."))
}

/// The scope every scoped node name shares, when there is one: tf2onnx names each node under
/// the Keras model's own name (`functional_1/block1_conv1_1/...`), which says nothing inside
/// the one model (see also [`drop_keras_call_suffix`]).
pub fn model_scope(nodes: &[NodeProto]) -> Option<String> {
    let mut scopes = nodes
        .iter()
        .filter_map(|n| n.name.as_deref())
        .filter(|name| name.contains('/'))
        .map(|name| name.split('/').find(|s| !s.is_empty()).unwrap_or(""));
    let first = scopes.next()?;
    scopes.all(|s| s == first).then(|| first.to_string())
}

/// A module called more than once (ResNet's shared `relu`) is one node per call, numbered in
/// call order as the state-dict path names them: `relu1`, `relu2`, `relu3`. The TorchScript
/// exporter gives each call a scope of its own (`relu`, `relu_1`, `relu_2`); the dynamo exporter
/// puts every call under the module's one path.
pub fn number_calls(nodes: &mut [(Option<String>, String)]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for p in nodes.iter().filter_map(|(p, _)| p.clone()) {
        *count.entry(p).or_default() += 1;
    }
    let is_leaf = |p: &str| {
        let prefix = format!("{p}.");
        !count.keys().any(|k| k.starts_with(&prefix))
    };
    // TorchScript: `base`, `base_1`, ... `base_n`, all leaves with one node each.
    let call_of = |p: &str| -> Option<(String, usize)> {
        let (base, n) = p.rsplit_once('_')?;
        let n: usize = n.parse().ok()?;
        (n > 0 && count.get(base) == Some(&1) && is_leaf(base)).then(|| (base.to_string(), n))
    };
    let mut renamed: HashMap<String, String> = HashMap::new();
    for p in count.keys() {
        if let Some((base, n)) = call_of(p).filter(|_| count[p] == 1 && is_leaf(p)) {
            renamed.insert(p.clone(), format!("{base}{}", n + 1));
            renamed.insert(base.clone(), format!("{base}1"));
        }
    }
    // Dynamo: one leaf path with several nodes of one kind.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let repeated = |p: &str, label: &str| {
        count[p] > 1
            && is_leaf(p)
            && nodes
                .iter()
                .filter(|(q, _)| q.as_deref() == Some(p))
                .all(|(_, l)| l == label)
    };
    let calls: Vec<bool> = nodes
        .iter()
        .map(|(p, label)| p.as_deref().is_some_and(|p| repeated(p, label)))
        .collect();
    for ((path, _), call) in nodes.iter_mut().zip(calls) {
        let Some(p) = path.as_mut() else { continue };
        if call {
            let n = seen.entry(p.clone()).or_default();
            *n += 1;
            *p = format!("{p}{n}");
        } else if let Some(new) = renamed.get(p.as_str()) {
            *p = new.clone();
        }
    }
}

/// Takes the suffix `_1` off every layer's scope when all of them have it and they stay
/// distinct without it: Keras 3 traces each layer under its name plus `_1` (`block3_conv1_1`),
/// so that the layers of a model whose layers are named (keras.applications) keep their Keras
/// names (`block3_conv1`). Layers Keras named itself (`conv2d`, `conv2d_1`, ...) trace under
/// scopes that do not all end so, and are kept as they are.
pub fn drop_keras_call_suffix(nodes: &mut [(Option<String>, String)]) {
    let layer = |p: &str| p.split('.').next().unwrap_or("").to_string();
    // Nodes tf2onnx makes itself (a convolution fused with its batch norm) are named
    // `Op__N`, outside every layer.
    let generated = |l: &str| l.contains("__");
    let layers: std::collections::HashSet<String> = nodes
        .iter()
        .filter_map(|(p, _)| p.as_deref().map(layer))
        .filter(|l| !generated(l))
        .collect();
    let stripped: std::collections::HashSet<&str> = layers
        .iter()
        .filter_map(|l| l.strip_suffix("_1"))
        .filter(|l| !l.is_empty())
        .collect();
    if layers.is_empty() || stripped.len() != layers.len() {
        return;
    }
    for (p, _) in nodes.iter_mut() {
        if let Some(path) = p.as_mut().filter(|p| !generated(&layer(p))) {
            let first = layer(path);
            let rest = &path[first.len()..];
            *path = format!("{}{rest}", &first[..first.len() - 2]);
        }
    }
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
    fn keras_call_suffixes_come_off_only_when_every_layer_has_one() {
        let s = |p: &str| (Some(p.to_string()), String::new());
        let mut named = vec![
            s("block1_conv1_1"),
            s("Conv__70"),
            s("block_bn_1.batchnorm"),
        ];
        drop_keras_call_suffix(&mut named);
        let paths: Vec<_> = named.iter().map(|(p, _)| p.clone().unwrap()).collect();
        assert_eq!(paths, ["block1_conv1", "Conv__70", "block_bn.batchnorm"]);
        let mut automatic = vec![s("conv2d_1"), s("conv2d_1_2"), s("conv2d_2_1")];
        drop_keras_call_suffix(&mut automatic);
        assert_eq!(automatic[1].0.as_deref(), Some("conv2d_1_2"));
    }

    #[test]
    fn names_are_unique_and_modules_stand_for_their_last_node() {
        let s = |p: Option<&str>, l: &str| (p.map(str::to_string), l.to_string());
        let names = assign(&[
            s(Some("layer1.0.conv1"), "conv"),
            s(Some("layer1.0.bn1"), "mul"),
            s(Some("layer1.0"), "add"),
            s(Some("layer1.0.bn1"), "add"),
            s(None, "flatten"),
            s(None, "flatten"),
        ]);
        assert_eq!(
            names,
            [
                "layer1.0.conv1",
                "layer1.0.bn1.mul",
                "layer1.0.add",
                "layer1.0.bn1.add",
                "flatten",
                "flatten_2"
            ]
        );
    }

    #[test]
    fn relative_scopes_join_into_module_paths() {
        let j = |segs: &[&str]| join(&segs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            j(&["layer1", "layer1.0", "downsample", "downsample.0"]).as_deref(),
            Some("layer1.0.downsample.0")
        );
        assert_eq!(
            j(&[
                "features",
                "features.1",
                "features.1.0",
                "block",
                "block.0",
                "block.0.0"
            ])
            .as_deref(),
            Some("features.1.0.block.0.0")
        );
        assert_eq!(j(&["stage", "1", "1"]).as_deref(), Some("stage.1.1"));
    }

    #[test]
    fn a_module_called_again_is_numbered_by_call() {
        let s = |p: &str, l: &str| (Some(p.to_string()), l.to_string());
        // TorchScript: a scope per call.
        let mut ts = vec![
            s("relu", "relu"),
            s("layer1.0.relu", "relu"),
            s("layer1.0.relu_1", "relu"),
            s("layer1.0", "add"),
            s("layer1.0.relu_2", "relu"),
        ];
        number_calls(&mut ts);
        let paths: Vec<_> = ts.iter().map(|(p, _)| p.clone().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "relu",
                "layer1.0.relu1",
                "layer1.0.relu2",
                "layer1.0",
                "layer1.0.relu3"
            ]
        );
        // Dynamo: the calls share the module's path.
        let mut dynamo = vec![
            s("layer1.0.relu", "relu"),
            s("layer1.0.relu", "relu"),
            s("layer1.0", "add"),
            s("layer1.0.relu", "relu"),
        ];
        number_calls(&mut dynamo);
        let paths: Vec<_> = dynamo.iter().map(|(p, _)| p.clone().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "layer1.0.relu1",
                "layer1.0.relu2",
                "layer1.0",
                "layer1.0.relu3"
            ]
        );
    }
}
