//! The Sparkplug B payload as protobuf messages (prost), written from the
//! message definitions of the Eclipse Sparkplug 3.0 specification
//! (`sparkplug_b.proto`, proto2, package `org.eclipse.tahu.protobuf`). Only
//! the parts the agent reads are spelled out: DataSet, Template and
//! extension values are kept as opaque messages (their fields are skipped
//! by the decoder), since the agent counts them as unsupported.
//!
//! Field numbers are the specification's; a mistake here would decode
//! another field silently, so the tests encode with these types and check
//! the bytes against hand-assembled protobuf of the specification's layout.

/// One Sparkplug message body (NBIRTH, NDATA, DBIRTH, ...).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Milliseconds since the Unix epoch, when the message was sent.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// 0 to 255 per edge node, across its node and device messages.
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// One metric of a payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Milliseconds since the Unix epoch, when the value was taken.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// A [`DataType`] code; required in births, optional in data messages.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(message, optional, tag = "8")]
    pub metadata: Option<Opaque>,
    #[prost(message, optional, tag = "9")]
    pub properties: Option<PropertySet>,
    #[prost(oneof = "MetricValue", tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19")]
    pub value: Option<MetricValue>,
}

/// The value of a metric, one of the specification's value fields.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MetricValue {
    /// Int8, Int16, Int32 (two's complement in the low bits), UInt8, UInt16, UInt32.
    #[prost(uint32, tag = "10")]
    Int(u32),
    /// Int64 (two's complement), UInt64, DateTime (ms since the epoch).
    #[prost(uint64, tag = "11")]
    Long(u64),
    #[prost(float, tag = "12")]
    Float(f32),
    #[prost(double, tag = "13")]
    Double(f64),
    #[prost(bool, tag = "14")]
    Boolean(bool),
    /// String, Text, UUID.
    #[prost(string, tag = "15")]
    String(String),
    #[prost(bytes = "vec", tag = "16")]
    Bytes(Vec<u8>),
    #[prost(message, tag = "17")]
    DataSet(Opaque),
    #[prost(message, tag = "18")]
    Template(Opaque),
    #[prost(message, tag = "19")]
    Extension(Opaque),
}

/// A message the agent does not read into: its fields are skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Opaque {}

/// Metric properties (engineering units and the like).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySet {
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

/// One property's value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    #[prost(oneof = "PropertyKind", tags = "3, 4, 5, 6, 7, 8, 9, 10")]
    pub value: Option<PropertyKind>,
}

/// The value of a property.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PropertyKind {
    #[prost(uint32, tag = "3")]
    Int(u32),
    #[prost(uint64, tag = "4")]
    Long(u64),
    #[prost(float, tag = "5")]
    Float(f32),
    #[prost(double, tag = "6")]
    Double(f64),
    #[prost(bool, tag = "7")]
    Boolean(bool),
    #[prost(string, tag = "8")]
    String(String),
    #[prost(message, tag = "9")]
    PropertySet(Opaque),
    #[prost(message, tag = "10")]
    PropertySets(Opaque),
}

/// The specification's datatype codes the agent tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float,
    Double,
    Boolean,
    String,
    DateTime,
    Text,
    Uuid,
    DataSet,
    Bytes,
    File,
    Template,
    /// PropertySet, PropertySetList, the array types (22 and up) and codes
    /// this specification version does not define: the code is kept.
    Other(u32),
}

impl DataType {
    pub fn from_code(code: u32) -> DataType {
        use DataType::*;
        match code {
            1 => Int8,
            2 => Int16,
            3 => Int32,
            4 => Int64,
            5 => UInt8,
            6 => UInt16,
            7 => UInt32,
            8 => UInt64,
            9 => Float,
            10 => Double,
            11 => Boolean,
            12 => String,
            13 => DateTime,
            14 => Text,
            15 => Uuid,
            16 => DataSet,
            17 => Bytes,
            18 => File,
            19 => Template,
            other => Other(other),
        }
    }

    /// The specification's name, for logs ("Int16", "DataSet", ...).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        use DataType::*;
        let s = match self {
            Int8 => "Int8",
            Int16 => "Int16",
            Int32 => "Int32",
            Int64 => "Int64",
            UInt8 => "UInt8",
            UInt16 => "UInt16",
            UInt32 => "UInt32",
            UInt64 => "UInt64",
            Float => "Float",
            Double => "Double",
            Boolean => "Boolean",
            String => "String",
            DateTime => "DateTime",
            Text => "Text",
            Uuid => "UUID",
            DataSet => "DataSet",
            Bytes => "Bytes",
            File => "File",
            Template => "Template",
            Other(code) => return format!("datatype {code}").into(),
        };
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A metric as the specification lays it out, assembled by hand: name
    /// (field 1, length-delimited), alias (2, varint), timestamp (3),
    /// datatype (4), double_value (13, 64-bit).
    #[test]
    fn field_numbers_are_the_specifications() {
        let mut want = vec![0x0a, 4];
        want.extend_from_slice(b"temp");
        want.extend_from_slice(&[0x10, 7]); // alias 7
        want.extend_from_slice(&[0x18, 0xe8, 0x07]); // timestamp 1000
        want.extend_from_slice(&[0x20, 10]); // datatype Double
        want.push(0x69); // field 13, wire type 1
        want.extend_from_slice(&21.5f64.to_le_bytes());
        let metric = Metric {
            name: Some("temp".into()),
            alias: Some(7),
            timestamp: Some(1000),
            datatype: Some(10),
            value: Some(MetricValue::Double(21.5)),
            ..Default::default()
        };
        assert_eq!(metric.encode_to_vec(), want);

        // Payload: timestamp (1), metrics (2), seq (3).
        let payload = Payload {
            timestamp: Some(5),
            metrics: vec![Metric {
                alias: Some(1),
                value: Some(MetricValue::Int(0xffff_fffe)),
                ..Default::default()
            }],
            seq: Some(3),
            ..Default::default()
        };
        let inner = [0x10, 1, 0x50, 0xfe, 0xff, 0xff, 0xff, 0x0f];
        let mut want = vec![0x08, 5, 0x12, inner.len() as u8];
        want.extend_from_slice(&inner);
        want.extend_from_slice(&[0x18, 3]);
        assert_eq!(payload.encode_to_vec(), want);
        assert_eq!(Payload::decode(&want[..]).unwrap(), payload);
    }

    #[test]
    fn data_set_and_template_values_are_skipped_not_refused() {
        // A metric whose value is a DataSet (field 17) with content the
        // agent does not model: it decodes, the value is opaque.
        let mut bytes = vec![0x0a, 1, b'd', 0x20, 16];
        let dataset = [0x08, 2, 0x12, 1, b'a']; // num_of_columns 2, columns "a"
        bytes.extend_from_slice(&[0x8a, 0x01, dataset.len() as u8]);
        bytes.extend_from_slice(&dataset);
        let m = Metric::decode(&bytes[..]).unwrap();
        assert_eq!(m.value, Some(MetricValue::DataSet(Opaque {})));
        assert_eq!(DataType::from_code(m.datatype.unwrap()), DataType::DataSet);
    }
}
