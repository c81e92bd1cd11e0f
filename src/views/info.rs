//! The info view: a layer's op, attributes, inputs, output shape and parameters, with its
//! activation statistics and the prediction when an image has been run.

use anyhow::Result;

use crate::model::{Activations, Model, NodeId, Prediction};
use crate::viz::activations::Stats;

/// The text of layer `id`, with what a pass over an image adds where one is given.
pub fn layer_text(
    model: &Model,
    id: NodeId,
    acts: Option<&Activations>,
    prediction: Option<&Prediction>,
) -> Result<String> {
    let n = model.graph.node(id);
    let inputs: Vec<String> = n
        .inputs
        .iter()
        .map(|&i| model.graph.node(i).name.clone())
        .collect();
    let mut s = format!("{}\n\nop          {}\n", n.name, n.op.kind());
    let attrs = n.op.attributes();
    if !attrs.is_empty() {
        s += &format!("attributes  {attrs}\n");
    }
    s += &format!(
        "inputs      {}\n",
        if inputs.is_empty() {
            "-".into()
        } else {
            inputs.join(", ")
        }
    );
    s += &format!(
        "output      {:?}\nparameters  {}\n",
        &n.shape[1..],
        n.op.parameter_count()
    );
    if let Some(t) = acts.and_then(|a| a.get(id)) {
        let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let st = Stats::of(&values);
        let zeros =
            values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len().max(1) as f64;
        let nonfinite = values.iter().filter(|v| !v.is_finite()).count();
        s += &format!(
            "\nactivations on this image\n  mean {:.4}  std {:.4}\n  min {:.4}  max {:.4}\n  zeros {:.1}%{}\n",
            st.mean,
            st.std,
            st.min,
            st.max,
            zeros * 100.0,
            if nonfinite > 0 { format!("\n  NaN or Inf values: {nonfinite}") } else { String::new() }
        );
    }
    if let Some(&(class, p)) = prediction.and_then(|p| p.top(1).first().copied()).as_ref() {
        s += &format!(
            "\nprediction  {} ({:.1}%)\n",
            model.labels[class],
            p * 100.0
        );
    }
    Ok(s)
}
