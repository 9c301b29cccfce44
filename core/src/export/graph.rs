//! A small ONNX graph builder: nodes with readable names, typed initializers
//! and constants, and graph inputs/outputs with symbolic dimensions. It knows
//! nothing about the Music Transformer; `super::model_graph` uses it.

use super::proto::{
    attribute_type, data_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, NodeProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// One dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// An attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Scope prefixed to node names (`layers.3.attn`), so a profile or a
    /// viewer shows where a node comes from.
    scope: String,
    counter: usize,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_scope(&mut self, scope: &str) {
        self.scope = scope.to_string();
    }

    /// A fresh value name in the current scope.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        if self.scope.is_empty() {
            format!("{hint}_{}", self.counter)
        } else {
            format!("{}/{hint}_{}", self.scope, self.counter)
        }
    }

    /// Add a node with one output; returns the output's name (fresh unless given).
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(op_type);
        self.op_named(op_type, inputs, &out, attrs)
    }

    /// Add a node whose single output has the given name.
    pub fn op_named(&mut self, op_type: &str, inputs: &[&str], output: &str, attrs: Vec<(&str, Attr)>) -> String {
        self.counter += 1;
        let name = if self.scope.is_empty() {
            format!("{op_type}_{}", self.counter)
        } else {
            format!("{}/{op_type}_{}", self.scope, self.counter)
        };
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name,
            op_type: op_type.to_string(),
            attribute: attrs.into_iter().map(|(n, a)| attribute(n, a)).collect(),
            ..Default::default()
        });
        output.to_string()
    }

    /// Add a node with several outputs, each named fresh; returns their names.
    pub fn op_outputs(&mut self, op_type: &str, inputs: &[&str], outputs: usize) -> Vec<String> {
        let names: Vec<String> = (0..outputs).map(|_| self.fresh(op_type)).collect();
        self.op_named(op_type, inputs, &names[0], vec![]);
        if let Some(node) = self.nodes.last_mut() {
            node.output = names.clone();
        }
        names
    }

    /// An int8 initializer (a quantized weight or its zero points).
    pub fn init_i8(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}");
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::INT8,
            name: name.to_string(),
            raw_data: data.iter().map(|&v| v as u8).collect(),
        });
        name.to_string()
    }

    /// A float32 initializer (a weight).
    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}");
        self.initializers.push(tensor_f32(name, dims, data));
        name.to_string()
    }

    /// An int64 initializer (a shape, an index, a bound).
    pub fn init_i64(&mut self, hint: &str, dims: &[usize], data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A 1-D int64 constant.
    pub fn ints(&mut self, hint: &str, data: &[i64]) -> String {
        self.init_i64(hint, &[data.len()], data)
    }

    /// A scalar float32 constant.
    pub fn scalar_f32(&mut self, hint: &str, value: f32) -> String {
        let name = self.fresh(hint);
        self.initializers.push(tensor_f32(&name, &[], &[value]));
        name
    }

    /// A scalar int64 constant.
    pub fn scalar_i64(&mut self, hint: &str, value: i64) -> String {
        self.init_i64(hint, &[], &[value])
    }

    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.inputs.push(value_info(name, elem_type, dims));
    }

    pub fn output(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem_type, dims));
    }

    pub fn finish(self, name: &str, doc: &str) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            doc_string: doc.to_string(),
            input: self.inputs,
            output: self.outputs,
            value_info: Vec::new(),
        }
    }
}

pub fn tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.to_string(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto { name: name.to_string(), ..Default::default() };
    match value {
        Attr::Int(i) => {
            a.r#type = attribute_type::INT;
            a.i = i;
        }
        Attr::Ints(v) => {
            a.r#type = attribute_type::INTS;
            a.ints = v;
        }
        Attr::Float(f) => {
            a.r#type = attribute_type::FLOAT;
            a.f = f;
        }
    }
    a
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                Dim::Named(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_names_are_unique_and_readable() {
        let mut b = GraphBuilder::new();
        b.set_scope("layers.0.attn");
        let x = b.op("Relu", &["a"], vec![]);
        let y = b.op("Relu", &[&x], vec![]);
        assert_ne!(x, y);
        assert!(x.starts_with("layers.0.attn/Relu_"), "{x}");
        let g = b.finish("g", "");
        assert_eq!(g.node.len(), 2);
        assert_eq!(g.node[1].input, vec![x]);
    }
}
