//! JSON <-> protobuf as etcd 3.4's grpc-gateway marshals (gogo jsonpb, `OrigName: true`,
//! `EmitDefaults: false`): proto field names, 64-bit integers as strings, bytes as padded
//! base64, enums by name, default values left out. Requests accept proto or camelCase names,
//! enum names or numbers, and ignore unknown fields, as jsonpb does. Pure: no I/O.

use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};

/// The gRPC message frame header: compressed flag and big-endian length.
const FRAME_HEADER_BYTES: usize = 5;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(ketch_proto::FILE_DESCRIPTOR_SET)
            .expect("the build's descriptor set decodes")
    })
}

/// The descriptor of a message in package `etcdserverpb` named by the route table.
pub fn message(name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(&format!("etcdserverpb.{name}"))
        .unwrap_or_else(|| panic!("route table names an unknown message {name}"))
}

/// Parses one JSON request and encodes it as a gRPC frame. The error text is the parser's.
pub fn request_frame(
    desc: &MessageDescriptor,
    mut json: serde_json::Value,
) -> Result<Bytes, String> {
    // jsonpb ignores unknown fields but refuses unknown enum names; prost-reflect has one
    // switch for both, so unknown fields are dropped first and the switch stays strict.
    strip_unknown_fields(desc, &mut json);
    canonical_base64(desc, &mut json).map_err(super::go_base64::error_text)?;
    let opts = DeserializeOptions::new().deny_unknown_fields(true);
    let msg = DynamicMessage::deserialize_with_options(desc.clone(), json, &opts)
        .map_err(|e| e.to_string())?;
    Ok(frame(&msg.encode_to_vec()))
}

/// Removes object keys that name no field of the message (by proto or JSON name), recursively.
/// Depth is bounded by serde_json's own nesting limit on the parsed value.
fn strip_unknown_fields(desc: &MessageDescriptor, json: &mut serde_json::Value) {
    let serde_json::Value::Object(map) = json else {
        return;
    };
    let field_of = |k: &str| {
        desc.get_field_by_name(k)
            .or_else(|| desc.get_field_by_json_name(k))
    };
    map.retain(|k, _| field_of(k).is_some());
    for (k, child) in map.iter_mut() {
        let Some(field) = field_of(k) else { continue };
        let prost_reflect::Kind::Message(inner) = field.kind() else {
            continue;
        };
        match child {
            serde_json::Value::Array(items) => {
                items
                    .iter_mut()
                    .for_each(|it| strip_unknown_fields(&inner, it));
            }
            other => strip_unknown_fields(&inner, other),
        }
    }
}

/// Decodes every bytes field's string as Go's StdEncoding does (encoding/json's rule, which
/// jsonpb follows) and puts back its canonical form, which prost-reflect's stricter decoder
/// takes: Go skips newlines and accepts non-zero trailing bits. The first string Go refuses
/// (in field-number order, as jsonpb fills fields) gives Go's offset, for etcd's
/// `illegal base64 data at input byte N`. Runs after `strip_unknown_fields`, on a value whose
/// depth serde_json has bounded.
fn canonical_base64(desc: &MessageDescriptor, json: &mut serde_json::Value) -> Result<(), usize> {
    let serde_json::Value::Object(map) = json else {
        return Ok(());
    };
    for field in desc.fields() {
        let name = if map.contains_key(field.name()) {
            field.name()
        } else {
            field.json_name()
        };
        let Some(value) = map.get_mut(name) else {
            continue;
        };
        let mut fix = |v: &mut serde_json::Value| match (field.kind(), v) {
            (prost_reflect::Kind::Bytes, serde_json::Value::String(s)) => {
                *s = super::go_base64::encode(&super::go_base64::decode(s.as_bytes())?);
                Ok(())
            }
            (prost_reflect::Kind::Message(inner), v) => canonical_base64(&inner, v),
            _ => Ok(()),
        };
        match value {
            serde_json::Value::Array(items) if field.is_list() => {
                items.iter_mut().try_for_each(&mut fix)?;
            }
            v => fix(v)?,
        }
    }
    Ok(())
}

/// Wraps an encoded message in an uncompressed gRPC frame.
pub fn frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(payload.len()).expect("gRPC messages are below 4 GiB"));
    out.put_slice(payload);
    out.freeze()
}

/// Takes the next complete gRPC frame's payload off the front of `buf`, if one is there.
pub fn next_frame(buf: &mut BytesMut) -> Option<Bytes> {
    if buf.len() < FRAME_HEADER_BYTES {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < FRAME_HEADER_BYTES + len {
        return None;
    }
    buf.advance(FRAME_HEADER_BYTES);
    Some(buf.split_to(len).freeze())
}

/// Renders an encoded response message as jsonpb does.
pub fn response_json(desc: &MessageDescriptor, payload: Bytes) -> Result<Vec<u8>, String> {
    let msg = DynamicMessage::decode(desc.clone(), payload).map_err(|e| e.to_string())?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true)
        .skip_default_fields(true)
        .use_enum_numbers(false);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    msg.serialize_with_options(&mut ser, &opts)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The first JSON value of a request body, as Go's `json.Decoder` reads it (anything after
/// the first value is ignored). An empty body is an empty message.
pub fn first_value(body: &[u8]) -> Result<serde_json::Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    match values.next() {
        Some(Ok(v)) => object_or_error(v),
        Some(Err(e)) if e.is_eof() => Err("unexpected EOF".to_string()),
        Some(Err(e)) => Err(go_wording(body, &e)),
        None => Err("EOF".to_string()),
    }
}

/// A syntax error in Go's words (what etcd answers) where the scanner finds one.
fn go_wording(body: &[u8], e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Syntax => {
            super::go_json::syntax_error(body).unwrap_or_else(|| e.to_string())
        }
        _ => e.to_string(),
    }
}

/// jsonpb decodes a message from a JSON object only.
pub fn object_or_error(v: serde_json::Value) -> Result<serde_json::Value, String> {
    if v.is_object() {
        Ok(v)
    } else {
        let kind = match v {
            serde_json::Value::Array(_) => "array",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::Bool(_) => "bool",
            _ => "null",
        };
        Err(format!(
            "json: cannot unmarshal {kind} into Go value of type map[string]json.RawMessage"
        ))
    }
}

/// Splits complete JSON values off the front of a streamed request body. Returns the values
/// parsed and whether the rest is malformed (as opposed to merely incomplete).
pub fn drain_values(buf: &mut BytesMut) -> (Vec<serde_json::Value>, Option<String>) {
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(buf).into_iter::<serde_json::Value>();
    let mut error = None;
    for item in stream.by_ref() {
        match item {
            Ok(v) => values.push(v),
            Err(e) if e.is_eof() => break,
            Err(e) => {
                error = Some(go_wording(&buf[stream.byte_offset()..], &e));
                break;
            }
        }
    }
    let consumed = stream.byte_offset();
    buf.advance(consumed);
    (values, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_request_accepts_proto_and_camel_names_and_string_ints() {
        let desc = message("PutRequest");
        let json =
            serde_json::json!({"key":"Zm9v","value":"YmFy","lease":"7","prevKv":true,"bogus":1});
        let framed = request_frame(&desc, json).unwrap();
        let mut buf = BytesMut::from(&framed[..]);
        let payload = next_frame(&mut buf).unwrap();
        let req = ketch_proto::PutRequest::decode(payload).unwrap();
        assert_eq!(&req.key[..], b"foo");
        assert_eq!(&req.value[..], b"bar");
        assert_eq!(req.lease, 7);
        assert!(req.prev_kv);
    }

    #[test]
    fn range_response_renders_as_jsonpb() {
        let resp = ketch_proto::RangeResponse {
            header: Some(ketch_proto::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 0,
            }),
            kvs: vec![ketch_proto::mvccpb::KeyValue {
                key: Bytes::from_static(b"foo"),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: Bytes::from_static(b"bar"),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let out = response_json(&message("RangeResponse"), resp.encode_to_vec().into()).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
    }

    #[test]
    fn bytes_that_are_not_base64_are_refused_in_gos_words_at_any_depth() {
        let range = message("RangeRequest");
        let err = request_frame(&range, serde_json::json!({"key": "not base64!"})).unwrap_err();
        assert_eq!(err, "illegal base64 data at input byte 3");
        let txn = message("TxnRequest");
        let nested = serde_json::json!({
            "compare": [{"key": "YQ==", "value": "YQ=="}],
            "success": [{"request_put": {"key": "YQ==", "value": "YQ"}}]
        });
        let err = request_frame(&txn, nested).unwrap_err();
        assert_eq!(err, "illegal base64 data at input byte 0");
        let camel = serde_json::json!({"key": "YQ==", "rangeEnd": "a!"});
        let err = request_frame(&range, camel).unwrap_err();
        assert_eq!(err, "illegal base64 data at input byte 1");
        assert!(request_frame(&range, serde_json::json!({"key": "YQ=\n="})).is_ok());
    }

    #[test]
    fn enums_render_by_name_and_uint32_as_number() {
        let resp = ketch_proto::HashResponse {
            header: None,
            hash: 4_168_932_502,
        };
        let out = response_json(&message("HashResponse"), resp.encode_to_vec().into()).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"hash":4168932502}"#);
        let desc = message("TxnRequest");
        let json = serde_json::json!({"compare":[{"key":"YQ==","result":"NOT_EQUAL","target":3,"x":1}],
            "success":[{"request_put":{"key":"YQ==","nope":{}}}]});
        let mut buf = BytesMut::from(&request_frame(&desc, json).unwrap()[..]);
        let txn = ketch_proto::TxnRequest::decode(next_frame(&mut buf).unwrap()).unwrap();
        assert_eq!(txn.compare[0].result, 3);
        assert_eq!(txn.compare[0].target, 3);
        let bad = serde_json::json!({"key":"YQ==","sort_order":"NOPE"});
        assert!(request_frame(&message("RangeRequest"), bad).is_err());
    }

    #[test]
    fn bodies_parse_as_go_decoder_reads_them() {
        assert_eq!(first_value(b"").unwrap(), serde_json::json!({}));
        assert_eq!(first_value(b"{\"key\":").unwrap_err(), "unexpected EOF");
        assert!(
            first_value(b"[1]")
                .unwrap_err()
                .contains("cannot unmarshal array")
        );
        assert_eq!(
            first_value(b"{\"a\":1} trailing").unwrap(),
            serde_json::json!({"a":1})
        );
        let mut buf = BytesMut::from(&b"{\"a\":1}\n{\"b\":2}{\"c\""[..]);
        let (values, err) = drain_values(&mut buf);
        assert_eq!(values.len(), 2);
        assert!(err.is_none());
        assert_eq!(&buf[..], b"{\"c\"");
    }
}
