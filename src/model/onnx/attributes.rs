//! A node's attributes by name, with ONNX's defaults where the caller gives one.

use anyhow::{anyhow, Result};

use super::proto::{AttributeProto, NodeProto, TensorProto};

pub struct Attributes<'a>(&'a NodeProto);

impl<'a> Attributes<'a> {
    pub fn of(node: &'a NodeProto) -> Self {
        Attributes(node)
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(|a| a.i).unwrap_or(default)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).and_then(|a| a.f).unwrap_or(default)
    }

    pub fn ints(&self, name: &str) -> Option<&'a [i64]> {
        self.get(name).map(|a| a.ints.as_slice())
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }

    pub fn tensor(&self, name: &str) -> Result<&'a TensorProto> {
        self.get(name)
            .and_then(|a| a.t.as_ref())
            .ok_or_else(|| anyhow!("has no tensor attribute '{name}'"))
    }
}
